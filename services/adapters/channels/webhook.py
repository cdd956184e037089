"""The webhook channel: HTTP POST of the rendered body, signed with HMAC-SHA256.

The receiver verifies `Herald-Signature: t=<unix seconds>,v1=<hex>` where v1 is
HMAC-SHA256(HERALD_WEBHOOK_SIGNING_SECRET, "<t>.<raw body>") - the scheme Stripe
uses, so existing verification code fits - and rejects old timestamps to stop
replays. `Idempotency-Key` carries the delivery id, so a receiver can drop a repeat.
"""

import hashlib
import hmac
import json
import time

import aiohttp
from herald.v1 import events_pb2
from opentelemetry import trace

from libs import telemetry
from libs.config import Settings
from services.adapters import ssrf
from services.adapters.channels.base import DeliveryError, Sent

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookChannel:
    name = "webhook"

    def __init__(self, settings: Settings, http: aiohttp.ClientSession) -> None:
        if not settings.webhook_signing_secret:
            raise RuntimeError("HERALD_WEBHOOK_SIGNING_SECRET is not set: webhooks could not be signed")
        self._secret = settings.webhook_signing_secret
        self._allowed_hosts = settings.webhook_allowed_hosts
        self._http = http
        self._tracer = telemetry.tracer("herald.webhook")

    async def send(self, job: events_pb2.DeliveryJob) -> Sent:
        try:
            await ssrf.check(job.address, self._allowed_hosts)
        except ssrf.BlockedDestination as e:
            raise DeliveryError(f"webhook URL refused: {e}", provider=self.name, retryable=False) from e
        body = job.body.encode()
        headers = {
            "Content-Type": _content_type(job.body),
            "User-Agent": "herald-webhook/1",
            "Herald-Signature": sign(self._secret, int(time.time()), body),
            "Herald-Delivery-Id": job.delivery_id,
            "Herald-Message-Id": job.message_id,
            "Idempotency-Key": job.delivery_id,
        }
        with self._tracer.start_as_current_span("POST webhook", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("http.request.method", "POST")
            telemetry.inject(headers)
            try:
                async with self._http.post(job.address, data=body, headers=headers, allow_redirects=False) as response:
                    status = response.status
                    request_id = response.headers.get("X-Request-Id", "")
                    retry_after = response.headers.get("Retry-After", "")
                    await response.read()
            except TimeoutError as e:
                raise DeliveryError("webhook endpoint timed out", provider=self.name, retryable=True) from e
            except aiohttp.ClientError as e:
                raise DeliveryError(f"webhook endpoint unreachable: {e}", provider=self.name, retryable=True) from e
            span.set_attribute("http.response.status_code", status)
        if 200 <= status < 300:
            return Sent(provider=self.name, provider_message_id=request_id)
        retryable = status in RETRYABLE_STATUS
        raise DeliveryError(
            f"webhook endpoint answered HTTP {status}",
            provider=self.name,
            retryable=retryable,
            retry_after=float(retry_after) if retryable and retry_after.isdigit() else None,
        )


def _content_type(body: str) -> str:
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"
