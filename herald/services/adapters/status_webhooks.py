"""Status webhooks out: every delivery status event of an app that registered a webhook
(AdminService.SetStatusWebhook) is POSTed to it, signed as Standard Webhooks says (standardwebhooks.com):

    webhook-id: <event_id>              the same on every retry: receivers drop repeats by it
    webhook-timestamp: <unix seconds>
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")> ...   one per valid secret

with the body `{"type": "delivery.<state>", "timestamp": <occur_time>, "data": <the DeliveryEvent as proto3
JSON>}`. The consumer reads HERALD_EVENTS like any other team's would. A POST that fails (no answer, not 2xx) fails
its NATS message, which the bus retries after growing delays (HERALD_STAGE_RETRY_BACKOFF, about 18 minutes in all)
and then dead-letters as herald.unprocessed.adapters-status-webhooks, where DeadLetterService lists and replays it.
A retry re-POSTs only the events of the message that were not yet taken. The URL passes the same SSRF guard as
the webhook channel: checked when it is set, and on every connection (webhook_client).
"""

import base64
import hashlib
import hmac
import json
import time
from collections import OrderedDict

import structlog
from google.protobuf import json_format
from herald.v1 import common_pb2, events_pb2
from nats.js.errors import KeyDeletedError, KeyNotFoundError

from herald.libs import ssrf
from herald.libs.bus import Bucket, Incoming, MessageBus
from herald.libs.status_webhooks import BUCKET, CACHE_SECONDS, StatusWebhookConfig
from herald.services.adapters.webhook_client import TransportError, WebhookClient

log = structlog.get_logger()

CONSUMER = "adapters-status-webhooks"
# Seconds a POST may take in all, and to connect.
TIMEOUT, CONNECT_TIMEOUT = 10.0, 5.0
# Event ids already taken by their webhook, so a retried message re-POSTs only the rest.
REMEMBERED = 100_000


class StatusWebhookFailed(Exception):
    """Not an outage of herald's: the app's endpoint did not take the event."""


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def payload(event: events_pb2.DeliveryEvent) -> bytes:
    state = common_pb2.DeliveryState.Name(event.state).removeprefix("DELIVERY_STATE_").lower()
    return json.dumps(
        {
            "type": f"delivery.{state}",
            "timestamp": event.occur_time.ToJsonString(),
            "data": json_format.MessageToDict(event),
        },
        separators=(",", ":"),
    ).encode()


class StatusWebhookPoster:
    def __init__(self, kv: Bucket, allowed_hosts: frozenset[str]) -> None:
        self._kv = kv
        self._cache: dict[str, tuple[float, StatusWebhookConfig | None]] = {}
        self._taken: OrderedDict[str, None] = OrderedDict()
        self._http = WebhookClient(allowed_hosts)

    @classmethod
    async def open(cls, bus: MessageBus, allowed_hosts: frozenset[str]) -> "StatusWebhookPoster":
        return cls(await bus.key_value(BUCKET), allowed_hosts)

    async def close(self) -> None:
        await self._http.close()

    async def handle(self, incoming: Incoming) -> None:
        failures = []
        for event in events_pb2.DeliveryEvents.FromString(incoming.data).events:
            webhook = await self._webhook(event.app_id)
            if webhook is None or (webhook.states and event.state not in webhook.states):
                continue
            if event.event_id in self._taken:
                continue
            try:
                await self._post(webhook, event)
            except StatusWebhookFailed as e:
                failures.append(str(e))
                continue
            self._taken[event.event_id] = None
            if len(self._taken) > REMEMBERED:
                self._taken.popitem(last=False)
        if failures:
            raise StatusWebhookFailed(f"{len(failures)} event(s) not taken: {failures[0]}")

    async def _post(self, webhook: StatusWebhookConfig, event: events_pb2.DeliveryEvent) -> None:
        body, now = payload(event), time.time()
        timestamp = int(now)
        signatures = [signature(s.value, event.event_id, timestamp, body) for s in webhook.secrets if s.valid_at(now)]
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "herald-status-webhook/1",
            "webhook-id": event.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signatures),
        }
        try:
            reply = await self._http.post(webhook.url, headers, body, TIMEOUT, CONNECT_TIMEOUT)
        except (TransportError, TimeoutError, ssrf.BlockedDestination) as e:
            raise StatusWebhookFailed(f"{webhook.url}: {type(e).__name__}: {e}") from None
        if not reply.ok:
            raise StatusWebhookFailed(f"{webhook.url} answered {reply.status}")

    async def _webhook(self, app_id: str) -> StatusWebhookConfig | None:
        clock = time.monotonic()
        cached = self._cache.get(app_id)
        if cached and cached[0] > clock:
            return cached[1]
        try:
            webhook: StatusWebhookConfig | None = StatusWebhookConfig.decode((await self._kv.get(app_id)).value or b"")
        except (KeyNotFoundError, KeyDeletedError):
            webhook = None
        self._cache[app_id] = (clock + CACHE_SECONDS, webhook)
        return webhook
