"""The webhook channel: HTTP POST of the rendered body, signed with HMAC-SHA256.

The receiver verifies `Herald-Signature: t=<unix seconds>,v1=<hex>` where v1 is
HMAC-SHA256(HERALD_WEBHOOK_SIGNING_SECRET, "<t>.<raw body>") - the scheme Stripe
uses, so existing verification code fits - and rejects old timestamps to stop
replays. `Idempotency-Key` carries the delivery id, so a receiver drops a repeat
(the README asks receivers to); that makes resending after a crash safe.

Its one account is built in (`builtin_account`): the signing secret and the
allowed private hosts come from herald's own configuration.
"""

import json
import time

import aiohttp

from herald.internal.v1 import work_pb2
from herald.libs import ssrf, telemetry
from herald.services.adapters.channels import http
from herald.services.adapters.channels.base import Account, DeliveryError, Failure, Provider, Sent
from herald.services.adapters.settings import AdaptersSettings
from herald.services.adapters.signing import webhook_signature
from herald.services.adapters.webhook_client import TransportError, WebhookClient


def builtin_account(settings: AdaptersSettings) -> Account:
    return Account(
        name="webhook",
        provider="webhook",
        settings={"allowed_hosts": ",".join(settings.webhook_allowed_hosts)},
        secrets={"signing_secret": settings.webhook_signing_secret},
    )


class Webhook(Provider):
    channel = "webhook"
    idempotent = True
    shared_endpoint = False

    def __init__(self, account: Account, http_session: aiohttp.ClientSession) -> None:
        super().__init__(account, http_session)
        self._allowed = frozenset(h for h in account.settings.get("allowed_hosts", "").split(",") if h)
        # A client of its own, which checks every address it connects to (webhook_client, ssrf.resolve); the shared
        # one also reaches providers an operator configured on private addresses.
        limit = http_session.connector.limit if http_session.connector else 100
        self.client = WebhookClient(self._allowed, limit)

    async def close(self) -> None:
        await self.client.close()

    async def send(self, job: work_pb2.DeliveryJob) -> Sent:
        try:
            ssrf.check(job.address, self._allowed)
        except ssrf.BlockedDestination as e:
            raise DeliveryError(f"webhook URL refused: {e}", Failure.PERMANENT) from e
        body = job.body.encode()
        headers = {
            "Content-Type": _content_type(job.body),
            "User-Agent": "herald-webhook/1",
            "Herald-Signature": webhook_signature(self.account.secret("signing_secret"), int(time.time()), body),
            "Herald-Delivery-Id": job.delivery_id,
            "Herald-Message-Id": job.message_id,
            "Idempotency-Key": job.delivery_id,
        }
        account = self.account
        with http.client_span(account, "POST", job.address) as span:
            telemetry.inject(headers)
            try:
                response = await self.client.post(job.address, headers, body, account.timeout)
            except ssrf.BlockedDestination as e:  # the name resolved to a private address
                http.failed(span, e)
                raise DeliveryError(f"webhook URL refused: {e}", Failure.PERMANENT) from e
            except (TimeoutError, TransportError) as e:
                raise http.no_answer(account, span, e) from e
            http.answered(span, response.status)
        if response.ok:
            return Sent(provider_message_id=response.headers.get("X-Request-Id", ""))
        error = http.status_error("webhook endpoint", response)
        # The receiver refusing our signature is its configuration, not an account herald can fail over from.
        if error.failure is Failure.BAD_CREDENTIALS:
            raise DeliveryError(error.reason, Failure.PERMANENT)
        raise error


def _content_type(body: str) -> str:
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"
