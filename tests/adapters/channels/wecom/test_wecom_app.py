"""The WeCom application-message plug-in against a local WeCom API, over real HTTP."""

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels.base import Account, DeliveryError, Failure, Sent
from herald.services.adapters.channels.wecom.app import WecomApp
from herald.services.adapters.channels.wecom.robot import WecomRobot
from tests.adapters.channels.wecom.fake_wecom_app import FakeWecomApp

CORP_ID = "ww0123456789abcdef"
CORP_SECRET = secrets.token_urlsafe(32)
AGENT_ID = 1000002


@pytest.fixture
async def wecom() -> AsyncIterator[FakeWecomApp]:
    async with FakeWecomApp(CORP_ID, CORP_SECRET, AGENT_ID, members={"zhangsan", "lisi"}) as fake:
        yield fake


def app(
    fake: FakeWecomApp,
    session: aiohttp.ClientSession,
    *,
    corp_id: str = CORP_ID,
    secret: str = CORP_SECRET,
    agent_id: str = str(AGENT_ID),
    timeout: float = 5,
) -> WecomApp:
    account = Account(
        "wecom-test",
        "wecom_app",
        endpoint=fake.url,
        settings={"corp_id": corp_id, "agent_id": agent_id},
        secrets={"corp_secret": secret},
        timeout=timeout,
    )
    return WecomApp(account, session)


def job(address: str = "ZhangSan", body: str = "disk 91% full on db-1", subject: str = "") -> work_pb2.DeliveryJob:
    return work_pb2.DeliveryJob(
        delivery_id="m1.0", message_id="m1", channel="wecom", address=address, subject=subject, body=body
    )


async def refused(provider: WecomApp, delivery: work_pb2.DeliveryJob | None = None) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await provider.send(delivery or job())
    return caught.value


async def test_text_message_is_sent_to_the_member(wecom: FakeWecomApp, session: aiohttp.ClientSession) -> None:
    sent = await app(wecom, session).send(job())

    [delivered] = wecom.delivered
    assert sent == Sent(delivered.msgid)
    assert delivered.message == {
        "touser": "ZhangSan",
        "agentid": AGENT_ID,
        "msgtype": "text",
        "text": {"content": "disk 91% full on db-1"},
    }


async def test_subject_makes_a_markdown_message(wecom: FakeWecomApp, session: aiohttp.ClientSession) -> None:
    await app(wecom, session).send(job(body="db-1 is at 91%", subject="Disk alert"))

    [delivered] = wecom.delivered
    assert delivered.message["msgtype"] == "markdown"
    assert delivered.message["markdown"] == {"content": "### Disk alert\ndb-1 is at 91%"}


async def test_concurrent_sends_share_one_token(wecom: FakeWecomApp, session: aiohttp.ClientSession) -> None:
    provider = app(wecom, session)

    await asyncio.gather(*(provider.send(job()) for _ in range(10)))
    await provider.send(job())

    assert wecom.token_requests == 1
    assert len(wecom.delivered) == 11


async def test_token_close_to_expiry_is_refreshed_before_use(
    wecom: FakeWecomApp, session: aiohttp.ClientSession
) -> None:
    # A 2 s token is renewed after half its life (the margin is at most half), while WeCom still takes it.
    wecom.expires_in = 2
    provider = app(wecom, session)

    await provider.send(job())
    await asyncio.sleep(1.1)
    await provider.send(job())

    assert wecom.token_requests == 2
    # Neither send was refused for its token.
    assert len(wecom.received) == 2


@pytest.mark.parametrize("lose_token", [FakeWecomApp.expire_tokens, FakeWecomApp.revoke_tokens])
async def test_refused_token_is_replaced_and_the_send_retried_once(
    wecom: FakeWecomApp, session: aiohttp.ClientSession, lose_token: Callable[[FakeWecomApp], None]
) -> None:
    provider = app(wecom, session)
    await provider.send(job())
    lose_token(wecom)

    sent = await provider.send(job())

    assert sent.provider_message_id == wecom.delivered[-1].msgid
    assert wecom.token_requests == 2
    assert len(wecom.received) == 3


async def test_outage_is_retryable(wecom: FakeWecomApp, session: aiohttp.ClientSession) -> None:
    wecom.outage = True

    error = await refused(app(wecom, session))

    assert error.failure is Failure.RETRYABLE
    assert "HTTP 503" in error.reason


async def test_slow_answer_is_retryable(wecom: FakeWecomApp, session: aiohttp.ClientSession) -> None:
    wecom.delay = 2

    error = await refused(app(wecom, session, timeout=0.3))

    assert error.failure is Failure.RETRYABLE
    assert "timed out" in error.reason


async def test_frequency_limit_is_rate_limited(wecom: FakeWecomApp, session: aiohttp.ClientSession) -> None:
    wecom.per_minute = 1
    provider = app(wecom, session)
    await provider.send(job())

    error = await refused(provider)

    assert error.failure is Failure.RATE_LIMITED
    assert "45009" in error.reason and "api freq out of limit" in error.reason


@pytest.mark.parametrize(
    ("corp_id", "secret", "said"),
    [(CORP_ID, "wrong-secret", "errcode 40001"), ("ww-wrong", CORP_SECRET, "errcode 40013")],
    ids=["wrong secret", "wrong corp id"],
)
async def test_refused_corp_credentials_are_bad_credentials(
    wecom: FakeWecomApp, session: aiohttp.ClientSession, corp_id: str, secret: str, said: str
) -> None:
    error = await refused(app(wecom, session, corp_id=corp_id, secret=secret))

    assert error.failure is Failure.BAD_CREDENTIALS
    assert said in error.reason
    assert secret not in error.reason
    assert not wecom.received


async def test_wrong_agent_id_is_bad_credentials(wecom: FakeWecomApp, session: aiohttp.ClientSession) -> None:
    error = await refused(app(wecom, session, agent_id="1000003"))

    assert error.failure is Failure.BAD_CREDENTIALS
    assert "40056" in error.reason and "agent_id" in error.reason


async def test_non_numeric_agent_id_is_caught_before_any_call(
    wecom: FakeWecomApp, session: aiohttp.ClientSession
) -> None:
    error = await refused(app(wecom, session, agent_id="sales-bot"))

    assert error.failure is Failure.BAD_CREDENTIALS
    assert "agent_id" in error.reason
    assert wecom.token_requests == len(wecom.received) == 0


async def test_unknown_member_is_a_dead_address(wecom: FakeWecomApp, session: aiohttp.ClientSession) -> None:
    error = await refused(app(wecom, session), job("wangwu"))

    assert error.failure is Failure.DEAD_ADDRESS
    assert "81013" in error.reason and "visible range" in error.reason


async def test_empty_message_is_refused_for_good(wecom: FakeWecomApp, session: aiohttp.ClientSession) -> None:
    error = await refused(app(wecom, session), job(body=""))

    assert error.failure is Failure.PERMANENT
    assert "44004" in error.reason and "empty" in error.reason


def test_the_address_picks_the_provider() -> None:
    robot_url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"

    assert WecomApp.accepts("ZhangSan") and not WecomRobot.accepts("ZhangSan")
    assert WecomRobot.accepts(robot_url) and not WecomApp.accepts(robot_url)
