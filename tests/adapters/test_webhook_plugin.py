"""The webhook plug-in on its own. What a receiver's answer tells herald, whatever case its server spells the
header names in (aiohttp says X-Request-ID, HTTP/2 servers say x-request-id): the receiver's request id is kept as
the provider message id, and its Retry-After paces the retry. An address that cannot be a URL is a permanent
failure, not an outage to retry for hours. And no spelling of an address reaches a host the operator did not allow."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from herald.internal.v1 import work_pb2
from herald.libs import channels, ssrf
from herald.services.adapters.channels.base import Account, DeliveryError, Failure
from herald.services.adapters.channels.webhook import Webhook
from tests.conftest import WEBHOOK_SECRET
from tests.helpers.webhook_sink import WebhookSink

ACCOUNT = Account(
    name="webhook",
    provider="webhook",
    settings={"allowed_hosts": "127.0.0.1"},
    secrets={"signing_secret": WEBHOOK_SECRET},
)


@asynccontextmanager
async def webhook() -> AsyncIterator[Webhook]:
    async with aiohttp.ClientSession() as session:
        provider = Webhook(ACCOUNT, session)
        try:
            yield provider
        finally:
            await provider.close()


def _job(sink: WebhookSink, path: str) -> work_pb2.DeliveryJob:
    return work_pb2.DeliveryJob(delivery_id=uuid.uuid4().hex, channel="webhook", address=sink.url(path), body="{}")


@pytest.mark.parametrize("name", ["X-Request-ID", "x-request-id", "X-Request-Id"])
async def test_the_receivers_request_id_is_kept_in_any_case(sink: WebhookSink, name: str) -> None:
    path = f"/request-id/{uuid.uuid4().hex[:8]}"
    sink.answer(path, (200, {name: "req-42"}))
    async with webhook() as provider:
        sent = await provider.send(_job(sink, path))
    assert sent.provider_message_id == "req-42"


async def test_a_lower_case_retry_after_paces_the_retry(sink: WebhookSink) -> None:
    path = f"/retry-after/{uuid.uuid4().hex[:8]}"
    sink.answer(path, (429, {"retry-after": "7"}))
    async with webhook() as provider:
        with pytest.raises(DeliveryError) as refused:
            await provider.send(_job(sink, path))
    assert refused.value.failure is Failure.RATE_LIMITED
    assert refused.value.retry_after == 7


# Each fails on every attempt: a backslash in the host, CR/LF in it, a port past 65535, a space.
NOT_URLS = ["http://exa\\mple.com/", "http://a.example\r\n.com/", "http://example.com:99999/", "http://a b.example/"]


@pytest.mark.parametrize("address", NOT_URLS)
async def test_an_address_that_cannot_be_a_url_fails_for_good(address: str) -> None:
    job = work_pb2.DeliveryJob(delivery_id=uuid.uuid4().hex, channel="webhook", address=address, body="{}")
    async with webhook() as provider:
        with pytest.raises(DeliveryError) as refused:
            await provider.send(job)
    assert refused.value.failure is Failure.PERMANENT
    assert refused.value.reason.startswith("webhook URL refused: ")


async def test_the_client_checks_the_address_it_connects_to(sink: WebhookSink) -> None:
    """A name is checked as the client resolves it to connect, so it cannot resolve publicly for a check and
    privately a moment later (DNS rebinding)."""
    async with webhook() as provider:  # allows 127.0.0.1, not the name localhost
        with pytest.raises(ssrf.BlockedDestination, match="non-public address"):
            await provider.client.post(sink.url("/rebound").replace("127.0.0.1", "localhost"), {}, b"{}", 5)
    assert sink.for_path("/rebound") == []


@asynccontextmanager
async def guarded_webhook() -> AsyncIterator[tuple[Webhook, WebhookSink]]:
    """A webhook whose operator allowed only example.com, and a loopback sink of the test's own (nothing else
    sends to it), which the webhook must never reach."""
    account = Account(
        name="webhook",
        provider="webhook",
        settings={"allowed_hosts": "example.com"},
        secrets={"signing_secret": WEBHOOK_SECRET},
    )
    sink = WebhookSink(WEBHOOK_SECRET)
    await sink.start()
    try:
        async with aiohttp.ClientSession() as session:
            provider = Webhook(account, session)
            try:
                yield provider, sink
            finally:
                await provider.close()
    finally:
        await sink.stop()


# Each is a URL (intake takes it) that one parser or another reads as the allowed host example.com, or as no
# address at all, while the HTTP client connects to the loopback sink - or, for the first, the reverse: a parser
# decoding %2f first reads the sink, the client reads localhost. {port} is the sink's.
CONFUSED = {
    "encoded-slash-in-userinfo": "http://127.0.0.1:{port}%2f@localhost:{port}/hook",
    "allowed-host-in-password": "http://example.com:80%2f@127.0.0.1:{port}/hook",
    "allowed-host-as-user": "http://example.com@127.0.0.1:{port}/hook",
    "allowed-host-in-fragment": "http://127.0.0.1:{port}#@example.com/hook",
    "allowed-host-in-query": "http://127.0.0.1:{port}?@example.com/hook",
    "ipv4-mapped-ipv6": "http://[::ffff:127.0.0.1]:{port}/hook",
    "fullwidth-digits": "http://\uff11\uff12\uff17.0.0.1:{port}/hook",
    "ipv4-compatible-ipv6": "http://[::127.0.0.1]:{port}/hook",
}


# Legacy numeric spellings of 127.0.0.1 that the socket layer still accepts, and that aiohttp before 3.14.5
# handed straight to the socket, past the guarding resolver.
NUMERIC_LOOPBACK = {
    "decimal": "http://2130706433:{port}/hook",
    "short": "http://127.1:{port}/hook",
    "octal": "http://0177.0.0.1:{port}/hook",
    "hex": "http://0x7f000001:{port}/hook",
    "trailing-dot": "http://127.0.0.1.:{port}/hook",
    "zero": "http://0:{port}/hook",
}


@pytest.mark.parametrize(
    ("address", "why"),
    [(a, "non-public address") for a in CONFUSED.values()] + [(a, "a.b.c.d") for a in NUMERIC_LOOPBACK.values()],
    ids=[*CONFUSED, *NUMERIC_LOOPBACK],
)
async def test_no_spelling_of_an_address_reaches_a_host_not_allowed(address: str, why: str) -> None:
    """The guard reads an address as the HTTP client does, so a URL a naive parser takes for an allowed host cannot
    smuggle a request to herald's own network, and a host that is an address to the C library and a name to
    everyone else is refused too: for good, saying why, never connected to and never retried for hours."""
    async with guarded_webhook() as (provider, sink):
        address = address.format(port=sink.port)
        channels.webhook_url(address)  # intake lets it in: the guard is what stands in the way
        job = work_pb2.DeliveryJob(delivery_id=uuid.uuid4().hex, channel="webhook", address=address, body="{}")
        with pytest.raises(DeliveryError) as refused:
            await provider.send(job)
        assert sink.received == []
    assert refused.value.failure is Failure.PERMANENT
    assert refused.value.reason.startswith("webhook URL refused: ")
    assert why in refused.value.reason
