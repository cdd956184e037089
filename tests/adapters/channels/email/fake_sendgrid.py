"""A local stand-in for Twilio SendGrid, written from SendGrid's public reference: v3 Mail Send
(https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send and its errors page): POST /v3/mail/send,
JSON, `Authorization: Bearer <API key>`, 202 with an empty body and `X-Message-Id`, errors as
{"errors": [{"message", "field", "help"}]}.

It checks the parts of the schema herald relies on as SendGrid does (recipient and sender addresses, subject,
content blocks text/plain first, header and custom_args values strings), records every request, and can be told
to fail, be slow, rate-limit or refuse the credentials (by being given other ones).

The Signed Event Webhook (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/
getting-started-event-webhook-security-features): the fake owns an ECDSA P-256 key pair, shows its public key as
SendGrid's console does (base64 DER SubjectPublicKeyInfo), and builds event posts as SendGrid sends them: a JSON
array ending in CRLF, signed over timestamp + body.
"""

import base64
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from herald.services.adapters.channels.base import Callback
from tests.adapters.channels.fake_provider import FakeHttpProvider

# SendGrid's own address check is stricter than RFC 5322: it wants a dot in the domain.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    mail: Any


@dataclass(frozen=True)
class EventPost:
    """An Event Webhook request as SendGrid sends it."""

    headers: dict[str, str]
    body: bytes

    def callback(self) -> Callback:
        """As herald's receipts endpoint hands it to the plug-in: header names in lower case."""
        return Callback(query={}, headers={k.lower(): v for k, v in self.headers.items()}, body=self.body)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def verification_key(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as SendGrid's console and its "get signed Event Webhook's public key" API show it."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@dataclass
class FakeSendGrid(FakeHttpProvider[Received]):
    api_key: str
    signing_key: ec.EllipticCurvePrivateKey = field(default_factory=new_key)
    # X-Message-Id -> the mail it was sent with, for the events about it.
    messages: dict[str, Any] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    # Set to make the next calls fail or be rate-limited.
    outage: bool = False
    rate_limited: bool = False

    @property
    def public_key(self) -> str:
        return verification_key(self.signing_key)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v3/mail/send", self._send)]

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            mail = json.loads(body)
        except ValueError:
            mail = None
        self.received.append(Received(dict(request.headers), mail))
        await self.stall()
        if self.outage:
            return _errors(500, [("Internal Server Error", None)])
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not secrets.compare_digest(given.encode(), self.api_key.encode()):
            return _errors(401, [("The provided authorization grant is invalid, expired, or revoked", None)])
        if self.rate_limited:
            reset = str(int(time.time()) + 30)
            headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
            return _errors(429, [("too many requests", None)], headers=headers)
        if request.content_type != "application/json" or not isinstance(mail, dict):
            return _errors(400, [("Bad Request", None)])
        if problems := _problems(mail):
            return _errors(400, problems)
        message_id = secrets.token_urlsafe(16)
        self.issued.append(message_id)
        self.messages[message_id] = mail
        return web.Response(status=202, headers={"X-Message-Id": message_id})

    def event(self, message_id: str, kind: str, **fields: Any) -> dict[str, Any]:
        """One event about a message this fake took, with the fields SendGrid puts on every event (its custom
        arguments among them); `fields` adds the event's own (status, reason, type) or overrides."""
        mail = self.messages[message_id]
        [personalization] = mail["personalizations"]
        event: dict[str, Any] = {
            "email": personalization["to"][0]["email"],
            "timestamp": int(time.time()),
            "smtp-id": f"<{message_id}@geopod-ismtpd-4>",
            "event": kind,
            "category": mail.get("categories", []),
            "sg_event_id": secrets.token_urlsafe(16),
            "sg_message_id": f"{message_id}.filterdrecv-5645d9c87f-6r2ch-1-6543A1B2-3.0",
            **personalization.get("custom_args", {}),
        }
        event.update(fields)
        return event

    def post(
        self,
        events: list[dict[str, Any]],
        *,
        timestamp: int | None = None,
        signed_with: ec.EllipticCurvePrivateKey | None = None,
    ) -> EventPost:
        """The request SendGrid posts for `events`. `signed_with` signs with another key, as a forger would;
        `timestamp` dates the request (a replay of an old one)."""
        body = (json.dumps(events, separators=(",", ":")) + "\r\n").encode()
        return self.signed(body, timestamp=timestamp, signed_with=signed_with)

    def signed(
        self, body: bytes, *, timestamp: int | None = None, signed_with: ec.EllipticCurvePrivateKey | None = None
    ) -> EventPost:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        key = signed_with or self.signing_key
        signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }
        return EventPost(headers, body)


def _problems(mail: dict[str, Any]) -> list[tuple[str, str | None]]:
    """SendGrid's validation of the fields herald sends, with its messages and field paths."""
    problems: list[tuple[str, str | None]] = []
    personalizations = mail.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.append(
            ("The personalizations field is required and must have at least one personalization.", "personalizations")
        )
        personalizations = []
    for i, personalization in enumerate(personalizations):
        to = personalization.get("to") if isinstance(personalization, dict) else None
        if not isinstance(to, list) or not to:
            problems.append(
                (
                    "The to array is required for all personalization objects, and must have at least one email "
                    "object with a valid email address.",
                    f"personalizations.{i}.to",
                )
            )
            continue
        for j, recipient in enumerate(to):
            if not _valid_email(recipient):
                problems.append(("Does not contain a valid address.", f"personalizations.{i}.to.{j}.email"))
        problems += _strings(personalization.get("custom_args", {}), f"personalizations.{i}.custom_args")
    sender = mail.get("from")
    if not isinstance(sender, dict):
        problems.append(("The from object must be provided for every email send.", "from"))
    elif not _valid_email(sender):
        problems.append(("The from email does not contain a valid address.", "from.email"))
    if not isinstance(mail.get("subject"), str) or not mail["subject"]:
        problems.append(("The subject is required.", "subject"))
    problems += _content(mail.get("content"))
    problems += _strings(mail.get("headers", {}), "headers")
    categories = mail.get("categories", [])
    if not isinstance(categories, list) or len(categories) > 10 or not all(isinstance(c, str) for c in categories):
        problems.append(("Categories must be an array of at most 10 strings.", "categories"))
    return problems


def _valid_email(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("email"), str) and bool(_EMAIL.fullmatch(value["email"]))


def _content(content: Any) -> list[tuple[str, str | None]]:
    if not isinstance(content, list) or not content:
        return [("Unless a valid template_id is provided, the content parameter is required.", "content")]
    types = [block.get("type") if isinstance(block, dict) else None for block in content]
    plain = "text/plain" in types
    if (plain and types[0] != "text/plain") or ("text/html" in types and types.index("text/html") != int(plain)):
        return [("If present, text/plain content must be first, followed by text/html.", "content")]
    return [
        ("The content value must be a string at least one character in length.", f"content.{i}.value")
        for i, block in enumerate(content)
        if not isinstance(block, dict) or not isinstance(block.get("value"), str) or not block["value"]
    ]


def _strings(values: Any, path: str) -> list[tuple[str, str | None]]:
    if not isinstance(values, dict):
        return [(f"Invalid type. Expected: object, given: {type(values).__name__}.", path)]
    return [
        (f"Invalid type. Expected: string, given: {type(v).__name__}.", f"{path}.{k}")
        for k, v in values.items()
        if not isinstance(v, str)
    ]


def _errors(
    status: int, errors: list[tuple[str, str | None]], *, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"errors": [{"message": m, "field": f, "help": _HELP if f else None} for m, f in errors]}
    return web.json_response(body, status=status, headers=headers)
