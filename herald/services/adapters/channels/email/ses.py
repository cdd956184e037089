"""Amazon SES, API v2 `SendEmail`: POST https://email.{region}.amazonaws.com/v2/email/outbound-emails.

The body is JSON {FromEmailAddress, Destination: {ToAddresses}, Content: {Raw: {Data}}, ConfigurationSetName?}:
Data is the base64 of the whole MIME message composed by mime.py (CRLF line ends, as RFC 5322 has them), so SES
sends exactly the headers herald chose, one-click unsubscribe included. The request is signed with AWS Signature
Version 4 (sigv4.py, service "ses"). SES answers 200 {"MessageId"}; that id is what its notifications name
later. Errors name their type in the x-amzn-ErrorType header (or "__type" in the body) and say why in "message":
the type decides, the HTTP status only when the type is one herald does not know.

Not idempotent: SendEmail takes no idempotency token, so calling twice sends two mails.

Notifications (bounces, complaints, deliveries) come through Amazon SNS: a topic that SES publishes to (an
identity's feedback notifications, which carry "notificationType", or a configuration set's event destination,
"eventType"), with an HTTP(S) subscription to herald's `/v1/receipts/<account>`. Raw message delivery must stay
off: only SNS's envelope is signed. SNS signs each POST (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) over
"Key\\nValue\\n" of the documented keys in their documented order, with the key of the certificate at
SigningCertURL. herald checks, as SNS's "Verifying the signatures of Amazon SNS messages" asks: TopicArn is the
account's own topic (any AWS customer can make SNS post to any URL); the certificate URL is https on
sns.<topic's region>.amazonaws.com; the signature holds under that certificate (fetched once per URL, over TLS).
A SubscriptionConfirmation that passes is confirmed by GETting its SubscribeURL (on the same host rule).
An SNS that cannot be reached while checking is an outage, not a forgery: that DeliveryError goes up, the
endpoint answers 503 and SNS posts again later.

Settings: `region`, `access_key_id`, `from`, `configuration_set` (optional), `sns_topic_arn` (needed for
notifications), `sns_certificate_url_prefix` (tests only: a URL prefix that replaces the SNS host rule), and
mime.py's unsubscribe settings. Secret: `secret_access_key`.
"""

import base64
import binascii
import json
from datetime import UTC, datetime
from email.headerregistry import Address
from typing import Any, TypeVar

import aiohttp
import yarl
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from herald.internal.v1 import work_pb2
from herald.libs.masking import mask
from herald.services.adapters.channels import http
from herald.services.adapters.channels.base import (
    Account,
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
from herald.services.adapters.channels.email import mime, sigv4

DEFAULT_ENDPOINT = "https://email.{region}.amazonaws.com"
T = TypeVar("T")

_CREDENTIALS = Failure.BAD_CREDENTIALS
# SendEmail's errors and AWS's common ones; a type not listed here keeps the meaning of its HTTP status.
_FAILURES = {
    # The account cannot send until its owner acts: another account may work meanwhile.
    "AccountSuspendedException": _CREDENTIALS,
    "SendingPausedException": _CREDENTIALS,
    "MailFromDomainNotVerifiedException": _CREDENTIALS,
    "NotFoundException": _CREDENTIALS,  # the configuration set does not exist
    "AccessDeniedException": _CREDENTIALS,
    "IncompleteSignature": _CREDENTIALS,
    "InvalidClientTokenId": _CREDENTIALS,
    "InvalidSignatureException": _CREDENTIALS,
    "MissingAuthenticationTokenException": _CREDENTIALS,
    "NotAuthorized": _CREDENTIALS,
    "OptInRequired": _CREDENTIALS,
    "SignatureDoesNotMatch": _CREDENTIALS,
    "UnrecognizedClientException": _CREDENTIALS,
    # The sending rate or the daily quota.
    "TooManyRequestsException": Failure.RATE_LIMITED,
    "LimitExceededException": Failure.RATE_LIMITED,
    "ThrottlingException": Failure.RATE_LIMITED,
    "Throttling": Failure.RATE_LIMITED,
    # This message: a virus, a sandbox account's unverified recipient, an invalid address.
    "MessageRejected": Failure.PERMANENT,
    "BadRequestException": Failure.PERMANENT,
    # The next attempt is signed afresh.
    "RequestExpired": Failure.RETRYABLE,
    "InternalFailure": Failure.RETRYABLE,
    "ServiceUnavailable": Failure.RETRYABLE,
}
# The keys SNS signs, in the order it signs them; "Subject" only when the notification has one.
_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
# SNS signs with a handful of certificates over the years; more than this many URLs is not SNS.
_MAX_CERTIFICATES = 8


class Ses(Provider):
    channel = "email"

    def __init__(self, account: Account, http_session: aiohttp.ClientSession) -> None:
        super().__init__(account, http_session)
        self._certificates: dict[str, x509.Certificate] = {}

    async def send(self, job: work_pb2.DeliveryJob) -> Sent:
        account = self.account
        region = account.setting("region")
        sender = mime.sender(account)
        recipient = mime.recipient(job.address)
        message = mime.compose(account, job, sender, recipient)
        raw = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        request: dict[str, Any] = {
            "FromEmailAddress": sender.addr_spec,
            "Destination": {"ToAddresses": [recipient.addr_spec]},
            "Content": {"Raw": {"Data": base64.b64encode(raw).decode()}},
        }
        if configuration_set := account.settings.get("configuration_set", ""):
            request["ConfigurationSetName"] = configuration_set
        body = json.dumps(request).encode()
        url = f"{account.url(DEFAULT_ENDPOINT.format(region=region))}/v2/email/outbound-emails"
        headers = sigv4.sign(
            "POST",
            url,
            {"Content-Type": "application/json"},
            body,
            region=region,
            service="ses",
            access_key_id=account.setting("access_key_id"),
            secret=account.secret("secret_access_key"),
        )
        response = await http.call(self, "POST", url, headers=headers, data=body)
        answer = response.json()
        if not isinstance(answer, dict):
            answer = {}
        if response.ok:
            return Sent(provider_message_id=str(answer.get("MessageId", "")))
        raise _error(account, response, answer, sender)

    async def receipts(self, callback: Callback) -> Receipts:
        topic = self.account.settings.get("sns_topic_arn", "")
        if not topic:
            raise ReceiptRefused(f"account {self.account.name} has no sns_topic_arn")
        envelope = _envelope(callback.body)
        # Checked first: a post about someone else's topic costs no certificate fetch.
        if envelope.get("TopicArn") != topic:
            raise ReceiptRefused(f"TopicArn {envelope.get('TopicArn', '')!r} is not the account's sns_topic_arn")
        await self._verify(envelope, topic)
        match envelope["Type"]:
            case "SubscriptionConfirmation":
                await self._confirm(envelope["SubscribeURL"], topic)
                return Receipts([])
            case "Notification":
                return Receipts(_reports(self.account.name, envelope["Message"]))
            case _:
                return Receipts([])

    async def _verify(self, envelope: dict[str, str], topic: str) -> None:
        algorithm = _SIGNATURE_HASHES.get(envelope.get("SignatureVersion", ""))
        if algorithm is None:
            raise ReceiptRefused(f"unknown SNS SignatureVersion {envelope.get('SignatureVersion', '')!r}")
        url = envelope.get("SigningCertURL", "")
        if not self._trusted(url, topic):
            raise ReceiptRefused(f"SigningCertURL {url!r} is not Amazon SNS's")
        try:
            signature = base64.b64decode(envelope.get("Signature", ""), validate=True)
        except binascii.Error as e:
            raise ReceiptRefused(f"SNS Signature is not base64: {e}") from e
        certificate = await self._certificate(url)
        now = datetime.now(UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise ReceiptRefused(f"the SNS signing certificate at {url} is not valid now")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise ReceiptRefused(f"the SNS signing certificate at {url} has no RSA key")
        try:
            key.verify(signature, string_to_sign(envelope), padding.PKCS1v15(), algorithm())
        except InvalidSignature as e:
            raise ReceiptRefused("the SNS signature does not match the message") from e

    async def _certificate(self, url: str) -> x509.Certificate:
        if (cached := self._certificates.get(url)) is not None:
            return cached
        pem = await self._get(url, "SigningCertURL")
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError as e:
            raise ReceiptRefused(f"SigningCertURL {url} did not give a PEM certificate: {e}") from e
        if len(self._certificates) >= _MAX_CERTIFICATES:
            del self._certificates[next(iter(self._certificates))]
        self._certificates[url] = certificate
        return certificate

    async def _confirm(self, subscribe_url: str, topic: str) -> None:
        """SNS sends nothing more until the subscription is confirmed by a GET of SubscribeURL."""
        if not self._trusted(subscribe_url, topic):
            raise ReceiptRefused(f"SubscribeURL {subscribe_url!r} is not Amazon SNS's")
        await self._get(subscribe_url, "SubscribeURL")

    async def _get(self, url: str, what: str) -> bytes:
        response = await http.call(self, "GET", url)
        if response.ok:
            return response.body
        if response.status >= 500 or response.status == 429:
            raise http.status_error(f"{self.account.name} {what}", response)
        raise ReceiptRefused(f"{what} {url} answered HTTP {response.status}")

    def _trusted(self, url: str, topic: str) -> bool:
        return sns_url_trusted(url, topic, self.account.settings.get("sns_certificate_url_prefix", ""))


def sns_url_trusted(url: str, topic_arn: str, prefix: str = "") -> bool:
    """Whether `url` is Amazon SNS's own for this topic: https on sns.<region>.amazonaws.com (.com.cn in China),
    the region the topic's ARN (arn:<partition>:sns:<region>:<account>:<name>) names. With `prefix` (tests'
    loopback SNS), the URL must start with it instead."""
    if prefix:
        return url.startswith(prefix if prefix.endswith("/") else prefix + "/")
    arn = topic_arn.split(":")
    if len(arn) < 6 or arn[0] != "arn" or arn[2] != "sns":
        return False
    domain = "amazonaws.com.cn" if arn[1] == "aws-cn" else "amazonaws.com"
    try:
        parsed = yarl.URL(url)
    except ValueError:
        return False
    return (
        parsed.scheme == "https"
        and parsed.host == f"sns.{arn[3]}.{domain}"
        and parsed.port == 443
        and parsed.user is None
        and parsed.password is None
    )


def string_to_sign(envelope: dict[str, str]) -> bytes:
    parts = []
    for key in _SIGNED_KEYS[envelope["Type"]]:
        if key in envelope:
            parts.append(f"{key}\n{envelope[key]}\n")
        elif key != "Subject":
            raise ReceiptRefused(f"SNS {envelope['Type']} has no {key}")
    return "".join(parts).encode()


def _envelope(body: bytes) -> dict[str, str]:
    """SNS's JSON, its string values only (MessageAttributes is an object, and not signed)."""
    try:
        parsed = json.loads(body)
    except ValueError as e:
        raise ReceiptRefused(f"not an SNS message: {e}") from e
    if not isinstance(parsed, dict):
        raise ReceiptRefused("not an SNS message: not a JSON object")
    envelope = {key: value for key, value in parsed.items() if isinstance(value, str)}
    if envelope.get("Type") not in _SIGNED_KEYS:
        raise ReceiptRefused(f"unknown SNS message Type {envelope.get('Type', '')!r}")
    return envelope


def _reports(account_name: str, message: str) -> list[Receipt]:
    """SES's notification, in either form: identity notifications name it in "notificationType", event
    publishing in "eventType"; the objects inside are the same."""
    try:
        event = json.loads(message)
    except ValueError as e:
        raise ReceiptRefused(f"the SNS Message is not an SES notification: {e}") from e
    if not isinstance(event, dict):
        raise ReceiptRefused("the SNS Message is not an SES notification: not a JSON object")
    kind = event.get("notificationType") or event.get("eventType")
    if kind not in ("Bounce", "Complaint", "Delivery"):
        return []
    message_id = _field(_field(event, "mail", dict), "messageId", str)
    if kind == "Bounce":
        bounce = _field(event, "bounce", dict)
        bounce_type = _field(bounce, "bounceType", str)
        report = AddressReport.HARD_BOUNCE if bounce_type == "Permanent" else AddressReport.SOFT_BOUNCE
        subtype = _text(bounce, "bounceSubType") or "no subtype"
        return [
            Receipt(
                message_id,
                False,
                f"{account_name}: SES reported a {bounce_type.lower()} bounce ({subtype}): "
                + mask(_text(bounced, "diagnosticCode") or _text(bounced, "status") or "no diagnostic code"),
                report,
                _field(bounced, "emailAddress", str),
            )
            for bounced in _field(bounce, "bouncedRecipients", list)
        ]
    if kind == "Complaint":
        complaint = _field(event, "complaint", dict)
        feedback = _text(complaint, "complaintFeedbackType") or "no feedback type"
        reason = f"{account_name}: SES reported a complaint, the recipient marked the mail as spam ({feedback})"
        return [
            Receipt(message_id, None, reason, AddressReport.COMPLAINT, _field(complained, "emailAddress", str))
            for complained in _field(complaint, "complainedRecipients", list)
        ]
    recipients = _field(_field(event, "delivery", dict), "recipients", list)
    return [Receipt(message_id, True, address=str(address)) for address in recipients] or [Receipt(message_id, True)]


def _field(value: object, key: str, kind: type[T]) -> T:
    found = value.get(key) if isinstance(value, dict) else None
    if not isinstance(found, kind):
        raise ReceiptRefused(f"the SES notification has no {key} {kind.__name__}")
    return found


def _text(value: dict[str, Any], key: str) -> str:
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, str) else ""


def _error(account: Account, response: http.Response, answer: dict[str, Any], sender: Address) -> DeliveryError:
    raw_type = response.headers.get("x-amzn-ErrorType", "") or str(answer.get("__type") or answer.get("code") or "")
    # "MessageRejected:http://internal.amazon.com/coral/..." in the header, "com.amazonaws.sesv2#..." in the body.
    error_type = raw_type.split(":", 1)[0].rsplit("#", 1)[-1]
    said = str(answer.get("message") or answer.get("Message") or "")
    generic = http.status_error(account.name, response, mask(f"{error_type}: {said}" if error_type else said))
    failure = _FAILURES.get(error_type, generic.failure)
    # A sandbox account names every unverified identity; the sender among them stops every mail of the account.
    if error_type == "MessageRejected" and "not verified" in said and sender.addr_spec.lower() in said.lower():
        failure = _CREDENTIALS
    retry_after = response.retry_after() if failure is Failure.RATE_LIMITED else generic.retry_after
    return DeliveryError(generic.reason, failure, retry_after=retry_after)
