"""Twilio SendGrid v3 Mail Send: POST /v3/mail/send, JSON, `Authorization: Bearer <API key>`.

SendGrid answers 202 with an empty body and the message's id in `X-Message-Id`; its Event Webhook names the
message later as `sg_message_id`, that id followed by ".filter..." (the relay's own suffix). Errors are JSON
{"errors": [{"message", "field", "help"}]}; the HTTP status says whose problem it is (401/403 the key or the
sender identity, 429 the rate limit, 400 this message).

The mail carries what SMTP's does (mime.py: sender, subject, one-click unsubscribe headers). SendGrid's own
click, open and subscription tracking are switched off per message: herald tracks and unsubscribes itself, and
SendGrid's subscription tracking would replace herald's List-Unsubscribe with its own.

Delivery reports: the Signed Event Webhook (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/
getting-started-event-webhook-security-features) POSTs a JSON array of events, signed with ECDSA P-256/SHA-256
over the `X-Twilio-Email-Event-Webhook-Timestamp` header followed by the raw body; the signature (base64 DER) is in
`X-Twilio-Email-Event-Webhook-Signature`. The account's `event_webhook_public_key` setting is the verification
key SendGrid shows (base64 DER SubjectPublicKeyInfo). A request whose timestamp is more than ten minutes from
now is refused as a replay. Bounces, blocks, drops and spam reports also report on the address (AddressReport).

Settings: `from` (the sender, a verified Sender Identity), `event_webhook_public_key`, and mime.py's unsubscribe
settings (`unsubscribe_url`, `unsubscribe_mailto`). Secret: `api_key`.

Not idempotent: Mail Send takes no idempotency key, so calling twice sends two mails.
"""

import base64
import binascii
import functools
import json
import re
import time
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from herald.internal.v1 import work_pb2
from herald.libs import categories
from herald.libs.masking import mask
from herald.services.adapters.channels import http
from herald.services.adapters.channels.base import (
    AddressReport,
    Callback,
    DeliveryError,
    Failure,
    Provider,
    Receipt,
    ReceiptRefused,
    Receipts,
    Sent,
)
from herald.services.adapters.channels.email import mime

DEFAULT_ENDPOINT = "https://api.sendgrid.com"
SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
# How far a signed request's timestamp may be from now, either way, before it counts as a replay.
MAX_SKEW = 600.0
# The custom argument that names herald's delivery in SendGrid's activity feed and in every event.
DELIVERY_ARG = "herald_delivery_id"
# A dropped message's reason when SendGrid holds the address on its own suppression lists. The events not read
# at all are steps on the way (processed, deferred) and engagement herald tracks itself (open, click) or hears
# through its own one-click endpoint (unsubscribe, group_unsubscribe).
_DROPPED = {"bounced address": AddressReport.HARD_BOUNCE, "spam reporting address": AddressReport.COMPLAINT}
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SendGrid(Provider):
    channel = "email"

    async def send(self, job: work_pb2.DeliveryJob) -> Sent:
        account = self.account
        response = await http.call(
            self,
            "POST",
            f"{account.url(DEFAULT_ENDPOINT)}/v3/mail/send",
            headers={"Authorization": f"Bearer {account.secret('api_key')}"},
            json_body=self._mail(job),
        )
        if response.ok:
            return Sent(provider_message_id=response.headers.get("X-Message-Id", ""))
        raise _error(account.name, response)

    async def receipts(self, callback: Callback) -> Receipts:
        events = self._verified(callback)
        return Receipts([receipt for event in events if (receipt := self._receipt(event)) is not None])

    def _mail(self, job: work_pb2.DeliveryJob) -> dict[str, Any]:
        """The v3 Mail Send body: one personalization, one recipient, the parts text first (RFC 2046: the
        preferred alternative last)."""
        sender = mime.sender(self.account)
        recipient = mime.recipient(job.address)
        content = [{"type": "text/plain", "value": job.body}]
        if job.html_body:
            content.append({"type": "text/html", "value": job.html_body})
        from_: dict[str, str] = {"email": sender.addr_spec}
        if sender.display_name:
            from_["name"] = sender.display_name
        mail: dict[str, Any] = {
            "personalizations": [
                {"to": [{"email": recipient.addr_spec}], "custom_args": {DELIVERY_ARG: job.delivery_id}}
            ],
            "from": from_,
            "subject": mime.subject(job),
            "content": content,
            "tracking_settings": {
                "click_tracking": {"enable": False, "enable_text": False},
                "open_tracking": {"enable": False},
                "subscription_tracking": {"enable": False},
            },
        }
        if headers := mime.list_unsubscribe(self.account, job):
            mail["headers"] = headers
        if job.category in categories.KNOWN:
            # SendGrid's statistics by category; never personal data (SendGrid keeps categories for good).
            mail["categories"] = [categories.name(job.category)]
        return mail

    def _verified(self, callback: Callback) -> list[dict[str, Any]]:
        """The events of a request SendGrid signed, or ReceiptRefused."""
        account = self.account
        configured = account.settings.get("event_webhook_public_key", "")
        if not configured:
            raise ReceiptRefused(f"account {account.name} has no event_webhook_public_key")
        signature = callback.headers.get(SIGNATURE_HEADER, "")
        timestamp = callback.headers.get(TIMESTAMP_HEADER, "")
        if not signature or not timestamp:
            raise ReceiptRefused("the Event Webhook signature or timestamp header is missing")
        if not _TIMESTAMP.fullmatch(timestamp) or abs(time.time() - int(timestamp)) > MAX_SKEW:
            raise ReceiptRefused(f"the Event Webhook timestamp {timestamp[:20]!r} is not within ten minutes of now")
        key = _public_key(account.name, configured)
        try:
            key.verify(
                base64.b64decode(signature, validate=True),
                timestamp.encode() + callback.body,
                ec.ECDSA(hashes.SHA256()),
            )
        except (binascii.Error, InvalidSignature) as e:
            raise ReceiptRefused("X-Twilio-Email-Event-Webhook-Signature does not match") from e
        try:
            events = json.loads(callback.body)
        except ValueError as e:
            raise ReceiptRefused(f"the Event Webhook body is not JSON: {e}") from e
        if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
            raise ReceiptRefused("the Event Webhook body is not an array of events")
        return events

    def _receipt(self, event: dict[str, Any]) -> Receipt | None:
        """What one event says of its message and its address; None when it says nothing herald acts on."""
        message_id = str(event.get("sg_message_id") or "").split(".", 1)[0]
        address = str(event.get("email") or "")
        said = mask(" ".join(str(event[k]) for k in ("status", "reason", "response") if event.get(k)))
        name = self.account.name
        delivered: bool | None
        report: AddressReport | None
        match event.get("event"):
            case "delivered":
                return Receipt(message_id, True) if message_id else None
            case "spamreport":
                # The mail was delivered; the complaint is about the address's wishes, not this delivery.
                what, delivered, report = "the reader reported the mail as spam", None, AddressReport.COMPLAINT
            case "bounce" if event.get("type") == "blocked":
                what, delivered, report = "the receiving server blocked the message", False, AddressReport.SOFT_BOUNCE
            case "bounce":
                # SendGrid suppresses the address too: its next mail there would be dropped as "Bounced Address".
                what, delivered, report = "the receiving server bounced the message", False, AddressReport.HARD_BOUNCE
            case "dropped":
                why = str(event.get("reason") or "").strip().lower()
                what, delivered, report = "SendGrid dropped the message", False, _DROPPED.get(why)
            case _:
                return None
        reason = f"{name}: {what}" + (f": {said}" if said else "")
        if report is None:
            return Receipt(message_id, delivered, reason) if message_id else None
        # Without a message id the report still tells herald about the address.
        return Receipt(message_id, delivered, reason, report, address) if message_id or address else None


@functools.lru_cache(maxsize=32)
def _public_key(account_name: str, configured: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER), or pasted as PEM."""
    try:
        if configured.lstrip().startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(configured.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode("".join(configured.split()), validate=True))
    except (ValueError, UnsupportedAlgorithm) as e:  # binascii.Error is a ValueError
        raise ReceiptRefused(f"account {account_name} event_webhook_public_key is not a public key: {e}") from e
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ReceiptRefused(f"account {account_name} event_webhook_public_key is not an ECDSA P-256 key")
    return key


def _error(account_name: str, response: http.Response) -> DeliveryError:
    answer = response.json()
    errors = answer.get("errors") if isinstance(answer, dict) else None
    said = "; ".join(
        str(error.get("message", ""))
        + (f" ({error['field']})" if error.get("field") else "")
        + (f" (see {error['help']})" if error.get("help") else "")
        for error in (errors if isinstance(errors, list) else [])
        if isinstance(error, dict)
    )
    # SendGrid's messages may quote the recipient's address.
    generic = http.status_error(account_name, response, mask(said))
    if generic.failure is Failure.RATE_LIMITED and generic.retry_after is None:
        reset = response.headers.get("X-RateLimit-Reset", "")
        if reset.isdigit():
            return DeliveryError(generic.reason, generic.failure, retry_after=max(0.0, int(reset) - time.time()))
    return generic
