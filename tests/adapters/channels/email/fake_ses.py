"""A local stand-in for Amazon SES API v2 and for the Amazon SNS topic its notifications go through, written from
AWS's public references:

- SendEmail (https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html): POST
  /v2/email/outbound-emails, JSON, Content.Raw.Data the base64 of the MIME message; 200 {"MessageId"}; errors as
  {"message"} with their type in x-amzn-ErrorType. The request must carry a valid AWS Signature Version 4
  ("Create a signed AWS API request"), which this fake recomputes on its own with the secret it was given.
- SES notifications (https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html and, for event
  publishing, event-publishing-retrieving-sns-contents.html): Bounce, Complaint and Delivery objects beside "mail".
- SNS HTTP(S) deliveries (https://docs.aws.amazon.com/sns/latest/dg/http-notification-json.html,
  sns-verify-signature-of-message.html): the JSON envelope, signed with SignatureVersion 1 (SHA1withRSA) or 2
  (SHA256withRSA) by the key of a certificate served at SigningCertURL (here a self-signed one under this fake's
  own URL), and a SubscribeURL whose GET confirms the subscription.

It records what it took (the MIME message parsed, for the tests to inspect) and can be told to fail: an outage,
throttling, an exhausted daily quota, a suspended account, or a sandbox account that only sends between verified
identities.
"""

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Literal
from urllib.parse import quote, urlencode

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.adapters.channels.fake_provider import FakeHttpProvider

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access "
    "Key and signing method. Consult the service documentation for details."
)
_ACCOUNT_ID = "123456789012"
# AWS refuses a request signed more than 5 minutes away from its own clock.
_SKEW = timedelta(minutes=5)
_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}

Kind = Literal["Bounce", "Complaint", "Delivery"]
Form = Literal["notification", "event"]


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    request: dict[str, Any]
    message: EmailMessage
    message_id: str


@dataclass(frozen=True)
class SnsPost:
    """An SNS HTTP delivery as SNS makes it: its headers (names in lower case) and JSON body."""

    headers: dict[str, str]
    body: bytes


@dataclass
class FakeSes(FakeHttpProvider[Received]):
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"
    topic_arn: str = f"arn:aws:sns:us-east-1:{_ACCOUNT_ID}:herald-ses-feedback"
    outage: bool = False
    throttled: bool = False
    quota_exceeded: bool = False
    suspended: bool = False
    # A sandbox account: sender and recipients must all be among these verified identities.
    verified: set[str] | None = None
    certificate_fetches: int = 0
    # Tokens of the subscriptions confirmed through SubscribeURL.
    confirmed: list[str] = field(default_factory=list)
    _key: rsa.RSAPrivateKey = field(init=False, repr=False)
    _pem: bytes = field(init=False, repr=False)
    _certificate_path: str = field(init=False, repr=False)
    _tokens: set[str] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(self._key, hashes.SHA256())
        )
        self._pem = certificate.public_bytes(serialization.Encoding.PEM)
        self._certificate_path = f"/SimpleNotificationService-{secrets.token_hex(16)}.pem"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v2/email/outbound-emails", self._send_email),
            web.get(self._certificate_path, self._serve_certificate),
            web.get("/", self._sns_action),
        ]

    @property
    def certificate_url(self) -> str:
        return self.url + self._certificate_path

    # SES: SendEmail.

    async def _send_email(self, request: web.Request) -> web.Response:
        body = await request.read()
        await self.stall()
        if self.outage:
            return _error(500, "InternalFailure", "The request processing has failed because of an unknown error.")
        if refused := self._authenticate(request, body):
            return refused
        if self.suspended:
            return _error(400, "AccountSuspendedException", "Your account has been suspended.")
        if self.throttled:
            return _error(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
        if self.quota_exceeded:
            return _error(400, "LimitExceededException", "Daily message quota exceeded.")
        try:
            sent = json.loads(body)
            raw = base64.b64decode(sent["Content"]["Raw"]["Data"], validate=True)
            sender = sent["FromEmailAddress"]
            recipients = sent["Destination"]["ToAddresses"]
        except (ValueError, KeyError, TypeError) as e:
            return _error(400, "BadRequestException", f"Invalid request: {e!r}")
        if request.content_type != "application/json" or not isinstance(recipients, list) or not recipients:
            return _error(400, "BadRequestException", "A JSON request with at least one recipient is required.")
        if self.verified is not None and (unverified := [a for a in [sender, *recipients] if a not in self.verified]):
            return _error(
                400,
                "MessageRejected",
                "Email address is not verified. The following identities failed the check in region "
                f"{self.region.upper()}: {', '.join(unverified)}",
            )
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        message_id = f"{secrets.token_hex(8)}-{uuid.uuid4()}-000000"
        self.received.append(Received(dict(request.headers), sent, message, message_id))
        return web.json_response({"MessageId": message_id})

    def _authenticate(self, request: web.Request, body: bytes) -> web.Response | None:
        """SigV4 as AWS checks it, recomputed here from the request as it arrived."""
        algorithm, _, fields = request.headers.get("Authorization", "").partition(" ")
        parts = dict(part.strip().partition("=")[::2] for part in fields.split(","))
        if algorithm != "AWS4-HMAC-SHA256" or not {"Credential", "SignedHeaders", "Signature"} <= parts.keys():
            return _error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        key_id, _, credential_scope = parts["Credential"].partition("/")
        if not secrets.compare_digest(key_id, self.access_key_id):
            return _error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
        amz_date = request.headers.get("X-Amz-Date", "")
        try:
            signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return _error(403, "IncompleteSignature", "Authorization header requires existence of a valid X-Amz-Date.")
        if abs(datetime.now(UTC) - signed_at) > _SKEW:
            return _error(403, "InvalidSignatureException", f"Signature expired: {amz_date} is out of range.")
        if credential_scope != f"{amz_date[:8]}/{self.region}/ses/aws4_request":
            return _error(403, "SignatureDoesNotMatch", f"Credential should be scoped correctly: {credential_scope}")
        payload_hash = hashlib.sha256(body).hexdigest()
        if request.headers.get("X-Amz-Content-Sha256", payload_hash) != payload_hash:
            return _error(400, "XAmzContentSHA256Mismatch", "The provided x-amz-content-sha256 does not match.")
        names = parts["SignedHeaders"].split(";")
        if "host" not in names or "x-amz-date" not in names or names != sorted(names):
            return _error(403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
        path, _, query = request.raw_path.partition("?")
        pairs = sorted(p.partition("=")[::2] for p in query.split("&") if p)
        canonical = "\n".join(
            [
                request.method,
                quote(path, safe="/"),
                "&".join(f"{name}={value}" for name, value in pairs),
                "".join(f"{n}:{' '.join(request.headers.get(n, '').split())}\n" for n in names),
                parts["SignedHeaders"],
                payload_hash,
            ]
        )
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{credential_scope}\n{digest}"
        key = ("AWS4" + self.secret_access_key).encode()
        for step in (amz_date[:8], self.region, "ses", "aws4_request"):
            key = hmac.new(key, step.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parts["Signature"]):
            return _error(403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
        return None

    # SNS: the signing certificate, subscription confirmation and the signed deliveries.

    async def _serve_certificate(self, _: web.Request) -> web.Response:
        self.certificate_fetches += 1
        return web.Response(body=self._pem, content_type="application/x-x509-ca-cert")

    async def _sns_action(self, request: web.Request) -> web.Response:
        query = request.query
        if (
            query.get("Action") != "ConfirmSubscription"
            or query.get("TopicArn") != self.topic_arn
            or query.get("Token") not in self._tokens
        ):
            error = "<Error><Type>Sender</Type><Code>InvalidParameter</Code><Message>Invalid token</Message></Error>"
            return web.Response(status=400, text=f"<ErrorResponse>{error}</ErrorResponse>", content_type="text/xml")
        self.confirmed.append(query["Token"])
        arn = f"{self.topic_arn}:{uuid.uuid4()}"
        return web.Response(
            text='<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
            f"<ConfirmSubscriptionResult><SubscriptionArn>{arn}</SubscriptionArn></ConfirmSubscriptionResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</ConfirmSubscriptionResponse>",
            content_type="text/xml",
        )

    def bounce(
        self,
        message_id: str,
        address: str,
        *,
        bounce_type: str = "Permanent",
        subtype: str = "General",
        diagnostic: str = "smtp; 550 5.1.1 user unknown",
        form: Form = "notification",
        version: str = "1",
    ) -> dict[str, str]:
        """A signed SNS Notification of an SES bounce of `address`, for the mail SES sent as `message_id`."""
        recipient = {"emailAddress": address, "action": "failed", "status": "5.1.1", "diagnosticCode": diagnostic}
        if bounce_type != "Permanent":
            recipient.update(action="delayed", status="4.2.2")
        detail = {
            "bounceType": bounce_type,
            "bounceSubType": subtype,
            "bouncedRecipients": [recipient],
            "timestamp": _timestamp(),
            "feedbackId": f"{secrets.token_hex(8)}-{uuid.uuid4()}-000000",
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        }
        return self.notification("Bounce", message_id, address, detail, form=form, version=version)

    def complaint(
        self, message_id: str, address: str, *, form: Form = "notification", version: str = "1"
    ) -> dict[str, str]:
        detail = {
            "userAgent": "ExampleCorp Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": address}],
            "complaintFeedbackType": "abuse",
            "arrivalDate": _timestamp(),
            "timestamp": _timestamp(),
            "feedbackId": f"{secrets.token_hex(8)}-{uuid.uuid4()}-000000",
        }
        return self.notification("Complaint", message_id, address, detail, form=form, version=version)

    def delivery(
        self, message_id: str, address: str, *, form: Form = "notification", version: str = "1"
    ) -> dict[str, str]:
        detail = {
            "timestamp": _timestamp(),
            "processingTimeMillis": 546,
            "recipients": [address],
            "smtpResponse": "250 ok:  Message 64111812 accepted",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
            "remoteMtaIp": "127.0.2.0",
        }
        return self.notification("Delivery", message_id, address, detail, form=form, version=version)

    def notification(
        self,
        kind: str,
        message_id: str,
        address: str,
        detail: dict[str, Any],
        *,
        form: Form = "notification",
        version: str = "1",
        subject: str | None = None,
    ) -> dict[str, str]:
        """Identity notifications name the kind in "notificationType", event publishing in "eventType"."""
        sent = next((r for r in self.received if r.message_id == message_id), None)
        source = sent.request["FromEmailAddress"] if sent else "noreply@example.com"
        mail: dict[str, Any] = {
            "timestamp": _timestamp(),
            "source": source,
            "sourceArn": f"arn:aws:ses:{self.region}:{_ACCOUNT_ID}:identity/{source.rpartition('@')[2]}",
            "sourceIp": "192.0.2.1",
            "sendingAccountId": _ACCOUNT_ID,
            "messageId": message_id,
            "destination": [address],
            "headersTruncated": False,
            "headers": [{"name": "From", "value": source}, {"name": "To", "value": address}],
            "commonHeaders": {"from": [source], "to": [address], "messageId": message_id},
        }
        event = {"eventType" if form == "event" else "notificationType": kind, "mail": mail, kind.lower(): detail}
        envelope = {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": self.topic_arn,
            **({"Subject": subject} if subject is not None else {}),
            "Message": json.dumps(event),
            "Timestamp": _timestamp(),
            "SignatureVersion": version,
        }
        unsubscribe = urlencode({"Action": "Unsubscribe", "SubscriptionArn": f"{self.topic_arn}:{uuid.uuid4()}"})
        return self.signed(envelope) | {"UnsubscribeURL": f"{self.url}/?{unsubscribe}"}

    def subscription_confirmation(self, *, version: str = "1") -> dict[str, str]:
        token = secrets.token_hex(64)
        self._tokens.add(token)
        query = urlencode({"Action": "ConfirmSubscription", "TopicArn": self.topic_arn, "Token": token})
        return self.signed(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": str(uuid.uuid4()),
                "Token": token,
                "TopicArn": self.topic_arn,
                "Message": f"You have chosen to subscribe to the topic {self.topic_arn}.\n"
                "To confirm the subscription, visit the SubscribeURL included in this message.",
                "SubscribeURL": f"{self.url}/?{query}",
                "Timestamp": _timestamp(),
                "SignatureVersion": version,
            }
        )

    def signed(self, envelope: dict[str, str]) -> dict[str, str]:
        """`envelope` with Signature and SigningCertURL, signed as SNS signs: "Key\\nValue\\n" of the signed keys
        present, in order, with SHA1withRSA (SignatureVersion 1) or SHA256withRSA (2)."""
        keys = _SIGNED_KEYS[envelope["Type"]]
        to_sign = "".join(f"{key}\n{envelope[key]}\n" for key in keys if key in envelope).encode()
        # SignatureVersion 1 is SHA1, as SNS still signs by default.
        algorithm = hashes.SHA1() if envelope["SignatureVersion"] == "1" else hashes.SHA256()  # noqa: S303
        signature = self._key.sign(to_sign, padding.PKCS1v15(), algorithm)
        return envelope | {"Signature": base64.b64encode(signature).decode(), "SigningCertURL": self.certificate_url}

    def post(self, envelope: dict[str, str]) -> SnsPost:
        """The HTTP POST SNS makes of `envelope` to a subscribed endpoint."""
        headers = {
            "x-amz-sns-message-type": envelope.get("Type", ""),
            "x-amz-sns-message-id": envelope.get("MessageId", ""),
            "x-amz-sns-topic-arn": envelope.get("TopicArn", ""),
            "content-type": "text/plain; charset=UTF-8",
            "user-agent": "Amazon Simple Notification Service Agent",
        }
        if envelope.get("Type") == "Notification":
            headers["x-amz-sns-subscription-arn"] = f"{self.topic_arn}:{uuid.uuid4()}"
        return SnsPost(headers, json.dumps(envelope, indent=2, separators=(",", " : ")).encode())


def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response(
        {"message": message},
        status=status,
        headers={
            "x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazonaws.sesv2/",
            "x-amzn-RequestId": str(uuid.uuid4()),
        },
    )
