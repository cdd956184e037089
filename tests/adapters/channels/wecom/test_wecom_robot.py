"""The WeCom group robot plug-in against a local WeCom, over real HTTP.

A robot's webhook key is its only secret, so where other providers refuse credentials WeCom refuses the
URL: that is a dead address, not bad credentials."""

from collections.abc import AsyncIterator

import aiohttp
import pytest

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels.base import Account, DeliveryError, Failure, Sent
from herald.services.adapters.channels.wecom.robot import WecomRobot
from tests.adapters.channels.wecom.fake_wecom_robot import FakeWecomRobots, Robot


@pytest.fixture
async def wecom() -> AsyncIterator[FakeWecomRobots]:
    async with FakeWecomRobots() as fake:
        yield fake


def robot(fake: FakeWecomRobots, session: aiohttp.ClientSession, *, timeout: float = 5) -> WecomRobot:
    return WecomRobot(Account("wecom-robot-test", "wecom_robot", endpoint=fake.url, timeout=timeout), session)


def job(address: str, body: str = "disk 91% full on db-1", subject: str = "") -> work_pb2.DeliveryJob:
    return work_pb2.DeliveryJob(
        delivery_id="m1.0", message_id="m1", channel="wecom", address=address, subject=subject, body=body
    )


async def refused(provider: WecomRobot, address: str, body: str = "disk 91% full on db-1") -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await provider.send(job(address, body))
    return caught.value


async def test_text_message_is_posted(wecom: FakeWecomRobots, session: aiohttp.ClientSession) -> None:
    group = Robot()

    sent = await robot(wecom, session).send(job(wecom.add_robot(group)))

    # A robot's answer has no message id to return.
    assert sent == Sent("")
    assert group.posted == [{"msgtype": "text", "text": {"content": "disk 91% full on db-1"}}]


async def test_subject_makes_a_markdown_message(wecom: FakeWecomRobots, session: aiohttp.ClientSession) -> None:
    group = Robot()

    await robot(wecom, session).send(job(wecom.add_robot(group), "db-1 is at 91%", subject="Disk alert"))

    assert group.posted == [{"msgtype": "markdown", "markdown": {"content": "### Disk alert\ndb-1 is at 91%"}}]


async def test_outage_is_retryable(wecom: FakeWecomRobots, session: aiohttp.ClientSession) -> None:
    address = wecom.add_robot(Robot())
    wecom.outage = True

    error = await refused(robot(wecom, session), address)

    assert error.failure is Failure.RETRYABLE
    assert "HTTP 502" in error.reason


async def test_slow_answer_is_retryable(wecom: FakeWecomRobots, session: aiohttp.ClientSession) -> None:
    address = wecom.add_robot(Robot())
    wecom.delay = 2

    error = await refused(robot(wecom, session, timeout=0.3), address)

    assert error.failure is Failure.RETRYABLE
    assert "timed out" in error.reason


async def test_past_20_a_minute_the_robot_is_throttled(wecom: FakeWecomRobots, session: aiohttp.ClientSession) -> None:
    group = Robot(per_minute=1)
    address = wecom.add_robot(group)
    provider = robot(wecom, session)
    await provider.send(job(address))

    error = await refused(provider, address)

    assert error.failure is Failure.RATE_LIMITED
    # The limit is per minute.
    assert error.retry_after == 60
    assert "45009" in error.reason and "api freq out of limit" in error.reason
    assert len(group.posted) == 1


async def test_removed_robot_is_a_dead_address(wecom: FakeWecomRobots, session: aiohttp.ClientSession) -> None:
    address = wecom.add_robot(Robot())
    wecom.robots.clear()

    error = await refused(robot(wecom, session), address)

    assert error.failure is Failure.DEAD_ADDRESS
    assert "93000" in error.reason and "invalid webhook url" in error.reason
    assert address not in error.reason


async def test_too_long_message_is_refused_for_good(wecom: FakeWecomRobots, session: aiohttp.ClientSession) -> None:
    address = wecom.add_robot(Robot())

    error = await refused(robot(wecom, session), address, body="磁盘" * 400)

    assert error.failure is Failure.PERMANENT
    assert "40058" in error.reason and "exceed max length 2048" in error.reason


@pytest.mark.parametrize(
    "address",
    [
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc",
        "{endpoint}/cgi-bin/webhook/send",
        "{endpoint}/cgi-bin/message/send?key=abc",
    ],
)
async def test_address_off_the_accounts_endpoint_is_never_called(
    wecom: FakeWecomRobots, session: aiohttp.ClientSession, address: str
) -> None:
    error = await refused(robot(wecom, session), address.format(endpoint=wecom.url))

    assert error.failure is Failure.PERMANENT
    assert "not a webhook URL" in error.reason
    assert not wecom.received
