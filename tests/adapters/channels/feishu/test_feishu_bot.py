"""The Feishu custom bot plug-in against a local Feishu, over real HTTP."""

import json
import secrets
from collections.abc import AsyncIterator

import aiohttp
import pytest

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels.base import Account, DeliveryError, Failure, Sent
from herald.services.adapters.channels.feishu import FeishuBot
from tests.adapters.channels.feishu.fake_feishu_bot import Bot, FakeFeishu

SECRET = secrets.token_urlsafe(16)


@pytest.fixture
async def feishu() -> AsyncIterator[FakeFeishu]:
    async with FakeFeishu() as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def bot(fake: FakeFeishu, session: aiohttp.ClientSession, *, secret: str = "", timeout: float = 5) -> FeishuBot:
    account = Account(
        "feishu-test",
        "feishu_bot",
        endpoint=fake.url,
        secrets={"sign_secret": secret} if secret else {},
        timeout=timeout,
    )
    return FeishuBot(account, session)


def job(address: str, body: str = "disk 91% full on db-1", subject: str = "") -> work_pb2.DeliveryJob:
    return work_pb2.DeliveryJob(
        delivery_id="m1.0", message_id="m1", channel="feishu", address=address, subject=subject, body=body
    )


async def refused(provider: FeishuBot, address: str, body: str = "disk 91% full on db-1") -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await provider.send(job(address, body))
    return caught.value


async def test_text_message_is_signed_and_posted(feishu: FakeFeishu, session: aiohttp.ClientSession) -> None:
    group = Bot(secret=SECRET)
    address = feishu.add_bot(group)

    sent = await bot(feishu, session, secret=SECRET).send(job(address))

    # A custom bot's answer has no message id to return.
    assert sent == Sent("")
    assert group.posted == [{"msg_type": "text", "content": {"text": "disk 91% full on db-1"}}]
    [received] = feishu.received
    assert received.signed
    assert received.headers["Content-Type"].startswith("application/json")


async def test_subject_makes_a_rich_text_post_with_that_title(
    feishu: FakeFeishu, session: aiohttp.ClientSession
) -> None:
    group = Bot(keywords=("Disk",))
    address = feishu.add_bot(group)

    await bot(feishu, session).send(job(address, "db-1 is at 91%\nclean up /var/log", subject="Disk alert"))

    [post] = group.posted
    assert post == {
        "msg_type": "post",
        "content": {
            "post": {
                "zh_cn": {
                    "title": "Disk alert",
                    "content": [
                        [{"tag": "text", "text": "db-1 is at 91%"}],
                        [{"tag": "text", "text": "clean up /var/log"}],
                    ],
                }
            }
        },
    }
    # Without a sign_secret nothing is signed.
    assert "sign" not in json.loads(feishu.received[0].body)


async def test_outage_is_retryable(feishu: FakeFeishu, session: aiohttp.ClientSession) -> None:
    address = feishu.add_bot(Bot())
    feishu.outage = True

    error = await refused(bot(feishu, session), address)

    assert error.failure is Failure.RETRYABLE
    assert "HTTP 503" in error.reason


async def test_slow_answer_is_retryable(feishu: FakeFeishu, session: aiohttp.ClientSession) -> None:
    address = feishu.add_bot(Bot())
    feishu.delay = 2

    error = await refused(bot(feishu, session, timeout=0.3), address)

    assert error.failure is Failure.RETRYABLE
    assert "timed out" in error.reason


async def test_past_its_limit_the_bot_is_throttled(feishu: FakeFeishu, session: aiohttp.ClientSession) -> None:
    group = Bot(per_minute=1)
    address = feishu.add_bot(group)
    provider = bot(feishu, session)
    await provider.send(job(address))

    error = await refused(provider, address)

    assert error.failure is Failure.RATE_LIMITED
    assert "11232" in error.reason and "frequency limited" in error.reason
    assert len(group.posted) == 1


async def test_wrong_sign_secret_is_bad_credentials(feishu: FakeFeishu, session: aiohttp.ClientSession) -> None:
    group = Bot(secret=SECRET)
    address = feishu.add_bot(group)

    error = await refused(bot(feishu, session, secret="not-" + SECRET), address)

    assert error.failure is Failure.BAD_CREDENTIALS
    assert "19021" in error.reason and "sign match fail" in error.reason and "sign_secret" in error.reason
    assert group.posted == []


async def test_message_without_a_keyword_is_refused_for_good(
    feishu: FakeFeishu, session: aiohttp.ClientSession
) -> None:
    address = feishu.add_bot(Bot(keywords=("[herald]",)))

    error = await refused(bot(feishu, session), address)

    assert error.failure is Failure.PERMANENT
    assert "19024" in error.reason and "Key Words Not Found" in error.reason


async def test_message_over_20_kb_is_refused_for_good(feishu: FakeFeishu, session: aiohttp.ClientSession) -> None:
    address = feishu.add_bot(Bot())

    error = await refused(bot(feishu, session), address, body="x" * 21_000)

    assert error.failure is Failure.PERMANENT
    assert "9499" in error.reason and "20 KB" in error.reason


async def test_removed_bot_is_a_dead_address(feishu: FakeFeishu, session: aiohttp.ClientSession) -> None:
    address = feishu.add_bot(Bot())
    feishu.bots.clear()

    error = await refused(bot(feishu, session), address)

    assert error.failure is Failure.DEAD_ADDRESS
    assert "19001" in error.reason and "access token invalid" in error.reason
    assert address not in error.reason


@pytest.mark.parametrize(
    "address",
    [
        "https://open.feishu.cn/open-apis/bot/v2/hook/abc",
        "{endpoint}/open-apis/bot/v2/hook/",
        "{endpoint}/open-apis/bot/v2/hook/../../../admin",
        "{endpoint}/open-apis/im/v1/messages",
    ],
)
async def test_address_off_the_accounts_endpoint_is_never_called(
    feishu: FakeFeishu, session: aiohttp.ClientSession, address: str
) -> None:
    error = await refused(bot(feishu, session), address.format(endpoint=feishu.url))

    assert error.failure is Failure.PERMANENT
    assert "not a webhook URL" in error.reason
    assert feishu.received == []
