"""The DingTalk robot plug-in against a local DingTalk, over real HTTP."""

import asyncio
import secrets
from collections.abc import AsyncIterator

import aiohttp
import pytest

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels.base import Account, DeliveryError, Failure, Sent
from herald.services.adapters.channels.dingtalk import DingTalkRobot
from tests.adapters.channels.dingtalk.fake_dingtalk_robot import FakeDingTalk, Robot

SECRET = "SEC" + secrets.token_hex(32)


@pytest.fixture
async def dingtalk() -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk() as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def robot(fake: FakeDingTalk, session: aiohttp.ClientSession, *, secret: str = "", timeout: float = 5) -> DingTalkRobot:
    account = Account(
        "dingtalk-test",
        "dingtalk_robot",
        endpoint=fake.url,
        secrets={"sign_secret": secret} if secret else {},
        timeout=timeout,
    )
    return DingTalkRobot(account, session)


def job(address: str, body: str = "disk 91% full on db-1", subject: str = "") -> work_pb2.DeliveryJob:
    return work_pb2.DeliveryJob(
        delivery_id="m1.0", message_id="m1", channel="dingtalk", address=address, subject=subject, body=body
    )


async def refused(provider: DingTalkRobot, address: str) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await provider.send(job(address))
    return caught.value


async def test_text_message_is_signed_and_posted(dingtalk: FakeDingTalk, session: aiohttp.ClientSession) -> None:
    group = Robot(secret=SECRET)
    address = dingtalk.add_robot(group)

    sent = await robot(dingtalk, session, secret=SECRET).send(job(address))

    # A robot's answer has no message id to return.
    assert sent == Sent("")
    assert group.posted == [{"msgtype": "text", "text": {"content": "disk 91% full on db-1"}}]
    [received] = dingtalk.received
    assert received.signed
    assert received.headers["Content-Type"].startswith("application/json")


async def test_every_signature_arrives_intact(dingtalk: FakeDingTalk, session: aiohttp.ClientSession) -> None:
    # Half of all signatures hold a "+", which a query string turns into a space unless it is encoded.
    address = dingtalk.add_robot(Robot(secret=SECRET))
    provider = robot(dingtalk, session, secret=SECRET)

    for _ in range(12):
        await provider.send(job(address))
        await asyncio.sleep(0.002)

    assert all(r.signed for r in dingtalk.received)


async def test_subject_makes_a_markdown_message_with_that_title(
    dingtalk: FakeDingTalk, session: aiohttp.ClientSession
) -> None:
    group = Robot(keywords=("Disk",))
    address = dingtalk.add_robot(group)

    await robot(dingtalk, session).send(job(address, "db-1 is at 91%", subject="Disk alert"))

    assert group.posted == [
        {"msgtype": "markdown", "markdown": {"title": "Disk alert", "text": "#### Disk alert\n\ndb-1 is at 91%"}}
    ]
    # Without a sign_secret nothing is signed.
    assert "sign" not in dingtalk.received[0].query


async def test_outage_is_retryable(dingtalk: FakeDingTalk, session: aiohttp.ClientSession) -> None:
    address = dingtalk.add_robot(Robot())
    dingtalk.outage = True

    error = await refused(robot(dingtalk, session), address)

    assert error.failure is Failure.RETRYABLE
    assert "HTTP 502" in error.reason


async def test_slow_answer_is_retryable(dingtalk: FakeDingTalk, session: aiohttp.ClientSession) -> None:
    address = dingtalk.add_robot(Robot())
    dingtalk.delay = 2

    error = await refused(robot(dingtalk, session, timeout=0.3), address)

    assert error.failure is Failure.RETRYABLE
    assert "timed out" in error.reason


async def test_past_20_a_minute_the_robot_is_throttled(dingtalk: FakeDingTalk, session: aiohttp.ClientSession) -> None:
    group = Robot(per_minute=1)
    address = dingtalk.add_robot(group)
    provider = robot(dingtalk, session)
    await provider.send(job(address))

    error = await refused(provider, address)

    assert error.failure is Failure.RATE_LIMITED
    # DingTalk throttles such a robot for 10 minutes.
    assert error.retry_after == 600
    assert "130101" in error.reason and "send too fast" in error.reason
    assert len(group.posted) == 1


async def test_wrong_sign_secret_is_bad_credentials(dingtalk: FakeDingTalk, session: aiohttp.ClientSession) -> None:
    group = Robot(secret=SECRET)
    address = dingtalk.add_robot(group)

    error = await refused(robot(dingtalk, session, secret="SEC" + secrets.token_hex(32)), address)

    assert error.failure is Failure.BAD_CREDENTIALS
    assert "310000" in error.reason and "sign not match" in error.reason and "sign_secret" in error.reason
    assert group.posted == []


async def test_message_without_a_keyword_is_refused_for_good(
    dingtalk: FakeDingTalk, session: aiohttp.ClientSession
) -> None:
    address = dingtalk.add_robot(Robot(keywords=("[herald]",)))

    error = await refused(robot(dingtalk, session), address)

    assert error.failure is Failure.PERMANENT
    assert "310000" in error.reason and "keywords not in content" in error.reason


async def test_removed_robot_is_a_dead_address(dingtalk: FakeDingTalk, session: aiohttp.ClientSession) -> None:
    address = dingtalk.add_robot(Robot())
    dingtalk.robots.clear()

    error = await refused(robot(dingtalk, session), address)

    assert error.failure is Failure.DEAD_ADDRESS
    assert "300005" in error.reason and "token is not exist" in error.reason
    assert address not in error.reason


@pytest.mark.parametrize(
    "address",
    [
        "http://127.0.0.2:1/robot/send?access_token=abc",
        "{endpoint}/robot/send",
        "{endpoint}/robot/other?access_token=abc",
        "{endpoint}@127.0.0.2/robot/send?access_token=abc",
    ],
)
async def test_address_off_the_accounts_endpoint_is_never_called(
    dingtalk: FakeDingTalk, session: aiohttp.ClientSession, address: str
) -> None:
    error = await refused(robot(dingtalk, session), address.format(endpoint=dingtalk.url))

    assert error.failure is Failure.PERMANENT
    assert "not a webhook URL" in error.reason
    assert dingtalk.received == []
