"""The Slack incoming-webhook plug-in against a local Slack, over real HTTP.

An incoming webhook has no credential but its URL, so where other providers refuse credentials Slack
revokes the URL: that is a dead address, not bad credentials."""

from collections.abc import AsyncIterator

import aiohttp
import pytest

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels.base import Account, DeliveryError, Failure, Sent
from herald.services.adapters.channels.slack import SlackWebhook
from tests.adapters.channels.slack.fake_slack_webhook import FakeSlack, Hook, State


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def webhook(fake: FakeSlack, session: aiohttp.ClientSession, *, timeout: float = 5) -> SlackWebhook:
    return SlackWebhook(Account("slack-test", "slack_webhook", endpoint=fake.url, timeout=timeout), session)


def job(address: str, body: str = "disk 91% full on db-1", subject: str = "") -> work_pb2.DeliveryJob:
    return work_pb2.DeliveryJob(
        delivery_id="m1.0", message_id="m1", channel="slack", address=address, subject=subject, body=body
    )


async def refused(provider: SlackWebhook, address: str) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await provider.send(job(address))
    return caught.value


async def test_text_message_is_posted(slack: FakeSlack, session: aiohttp.ClientSession) -> None:
    hook = Hook()

    sent = await webhook(slack, session).send(job(slack.add_hook(hook)))

    # An incoming webhook's answer has no message id to return.
    assert sent == Sent("")
    assert hook.posted == [{"text": "disk 91% full on db-1"}]


async def test_subject_becomes_a_header_block(slack: FakeSlack, session: aiohttp.ClientSession) -> None:
    hook = Hook()

    await webhook(slack, session).send(job(slack.add_hook(hook), "db-1 is at *91%*", subject="Disk alert"))

    assert hook.posted == [
        {
            "text": "Disk alert\ndb-1 is at *91%*",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "Disk alert"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "db-1 is at *91%*"}},
            ],
        }
    ]


async def test_long_message_stays_within_block_limits(slack: FakeSlack, session: aiohttp.ClientSession) -> None:
    hook = Hook()

    await webhook(slack, session).send(job(slack.add_hook(hook), "x" * 7000, subject="S" * 200))

    [message] = hook.posted
    assert [len(b["text"]["text"]) for b in message["blocks"]] == [150, 3000, 3000, 1000]


async def test_outage_is_retryable(slack: FakeSlack, session: aiohttp.ClientSession) -> None:
    address = slack.add_hook(Hook())
    slack.outage = True

    error = await refused(webhook(slack, session), address)

    assert error.failure is Failure.RETRYABLE
    assert "HTTP 500" in error.reason and "rollup_error" in error.reason


async def test_slow_answer_is_retryable(slack: FakeSlack, session: aiohttp.ClientSession) -> None:
    address = slack.add_hook(Hook())
    slack.delay = 2

    error = await refused(webhook(slack, session, timeout=0.3), address)

    assert error.failure is Failure.RETRYABLE
    assert "timed out" in error.reason


async def test_past_a_message_a_second_the_webhook_is_throttled(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    hook = Hook()
    address = slack.add_hook(hook)
    provider = webhook(slack, session)
    await provider.send(job(address))

    error = await refused(provider, address)

    assert error.failure is Failure.RATE_LIMITED
    assert error.retry_after == 1
    assert "HTTP 429" in error.reason and "rate_limited" in error.reason
    assert len(hook.posted) == 1


@pytest.mark.parametrize(
    ("state", "said"),
    [(State.REVOKED, "invalid_token"), (State.ARCHIVED, "channel_is_archived"), (None, "no_service")],
)
async def test_revoked_or_removed_webhook_is_a_dead_address(
    slack: FakeSlack, session: aiohttp.ClientSession, state: State | None, said: str
) -> None:
    address = slack.add_hook(Hook(state or State.ACTIVE))
    if state is None:
        slack.hooks.clear()

    error = await refused(webhook(slack, session), address)

    assert error.failure is Failure.DEAD_ADDRESS
    assert said in error.reason and "new webhook URL" in error.reason
    assert address not in error.reason


async def test_workspace_restriction_is_permanent(slack: FakeSlack, session: aiohttp.ClientSession) -> None:
    address = slack.add_hook(Hook(State.PROHIBITED))

    error = await refused(webhook(slack, session), address)

    assert error.failure is Failure.PERMANENT
    assert "HTTP 403" in error.reason and "action_prohibited" in error.reason


@pytest.mark.parametrize(
    "address",
    [
        "https://hooks.slack.com/services/T0/B0/x",
        "{endpoint}/services/",
        "{endpoint}/workflows/T0/A0/1/x",
        "{endpoint}/services/T0/../../admin",
    ],
)
async def test_address_off_the_accounts_endpoint_is_never_called(
    slack: FakeSlack, session: aiohttp.ClientSession, address: str
) -> None:
    error = await refused(webhook(slack, session), address.format(endpoint=slack.url))

    assert error.failure is Failure.PERMANENT
    assert "not a webhook URL" in error.reason
    assert not slack.received
