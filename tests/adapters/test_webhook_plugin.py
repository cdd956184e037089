"""The webhook plug-in on its own. What a receiver's answer tells herald, whatever case its server spells the
header names in (aiohttp says X-Request-ID, HTTP/2 servers say x-request-id): the receiver's request id is kept as
the provider message id, and its Retry-After paces the retry. And an address that cannot be a URL is a permanent
failure, not an outage to retry for hours."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from herald.v1 import events_pb2

from services.adapters import ssrf
from services.adapters.channels.base import Account, DeliveryError, Failure
from services.adapters.channels.webhook import Webhook
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


def _job(sink: WebhookSink, path: str) -> events_pb2.DeliveryJob:
    return events_pb2.DeliveryJob(delivery_id=uuid.uuid4().hex, channel="webhook", address=sink.url(path), body="{}")


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
    job = events_pb2.DeliveryJob(delivery_id=uuid.uuid4().hex, channel="webhook", address=address, body="{}")
    async with webhook() as provider:
        with pytest.raises(DeliveryError) as refused:
            await provider.send(job)
    assert refused.value.failure is Failure.PERMANENT
    assert refused.value.reason.startswith("webhook URL refused: ")


async def test_the_client_checks_the_address_it_connects_to(sink: WebhookSink) -> None:
    """A name is checked as the client resolves it to connect, so it cannot resolve publicly for a check and
    privately a moment later (DNS rebinding)."""
    async with webhook() as provider:  # allows 127.0.0.1, not the name localhost
        with pytest.raises(aiohttp.ClientConnectorError) as refused:
            await provider.http.post(sink.url("/rebound").replace("127.0.0.1", "localhost"), data=b"{}")
    assert isinstance(refused.value.os_error, ssrf.BlockedDestination)
    assert sink.for_path("/rebound") == []
