"""The email channel over SMTP submission to the account's relay (RFC 6409): STARTTLS (RFC 3207), then AUTH
(RFC 4954) when the account has a username, then one MIME message per delivery.

The relay owns DKIM signing, queueing and bounces; herald only has to hand it a well-formed message and
read its reply. `Message-ID: <delivery_id@from-domain>` is fixed per delivery, so a resend carries the same
id (receivers that de-duplicate on it drop the copy) and a bounce can be matched back to the delivery. That
is not a relay-side de-duplication, hence not `idempotent`: a timeout after DATA may hide an accepted
message.

The message itself (headers, one-click unsubscribe) is composed in mime.py, as for every e-mail provider.

One connection per account, used by one send at a time: a connection costs several round trips (TCP,
STARTTLS, EHLO twice, AUTH) that a send would otherwise pay every time.
"""

import asyncio
import re
import ssl
import time
from email.headerregistry import Address
from urllib.parse import urlsplit

import aiohttp
import aiosmtplib
from opentelemetry import trace

from herald.internal.v1 import work_pb2
from herald.libs import telemetry
from herald.libs.masking import mask
from herald.services.adapters.channels.base import Account, DeliveryError, Failure, Provider, Sent
from herald.services.adapters.channels.email import mime

# There is no public SMTP relay: an account must name its own as "host:port".
DEFAULT_ENDPOINT = ""
# Relays drop idle sessions (RFC 5321 suggests 5 minutes) and NAT boxes forget them without telling us;
# writing into a forgotten one would wait out the whole timeout, so an idle connection is replaced first.
_MAX_IDLE = 60.0
# RFC 4954: 530 authentication required, 534 mechanism too weak, 535 credentials invalid, 538 encryption
# required for the mechanism.
_AUTH_CODES = frozenset({530, 534, 535, 538})
# RFC 3463 X.1.1 bad destination mailbox, RFC 7505 X.1.10 the domain accepts no mail (null MX).
_DEAD_MAILBOX = frozenset({"5.1.1", "5.1.10"})
_ENHANCED_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\b")
# Wording relays use when they slow a sender down: Gmail "unusual rate", "receiving mail too quickly",
# "relay limit exceeded"; Amazon SES "454 Throttling failure: Maximum sending rate exceeded".
_THROTTLING = re.compile(r"\brate\b|throttl|too many|too (?:fast|quickly)|(?:quota|limit) exceeded", re.IGNORECASE)
_tracer = telemetry.tracer("herald.providers")


class Smtp(Provider):
    """Settings: `from` (the sender, e.g. "Herald <noreply@example.com>"), `starttls` ("required", the
    default, or "none" for a relay on the same host), `tls_ca_file` (a CA bundle that replaces the system
    trust store, for a relay with a private CA), `username`, and mime.py's unsubscribe settings. Secret:
    `password`."""

    channel = "email"

    def __init__(self, account: Account, http: aiohttp.ClientSession) -> None:
        super().__init__(account, http)
        self._lock = asyncio.Lock()
        self._client: aiosmtplib.SMTP | None = None
        self._last_used = 0.0

    async def send(self, job: work_pb2.DeliveryJob) -> Sent:
        account = self.account
        sender = mime.sender(account)
        recipient = mime.recipient(job.address)
        message = mime.compose(account, job, sender, recipient)
        async with self._lock:
            with _tracer.start_as_current_span(f"SMTP {account.provider}", kind=trace.SpanKind.CLIENT) as span:
                span.set_attribute("herald.provider_account", account.name)
                try:
                    async with asyncio.timeout(account.timeout):
                        client = await self._connection()
                        _, reply = await client.send_message(
                            message, sender=sender.addr_spec, recipients=[recipient.addr_spec]
                        )
                except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused) as e:
                    # The relay answered and the envelope was reset: the session stays usable.
                    raise _refused(account, sender, e) from e
                except (aiosmtplib.SMTPException, OSError) as e:
                    self._disconnect()
                    raise _unsent(account, e) from e
                finally:
                    self._last_used = time.monotonic()
                # The relay's own id (Postfix "queued as ...", SES "Ok <id>") finds the message in its logs.
                span.set_attribute("herald.smtp_reply", reply)
        return Sent(provider_message_id=str(message["Message-ID"]))

    async def close(self) -> None:
        async with self._lock:
            if self._client is not None and self._client.is_connected:
                try:
                    await self._client.quit(timeout=self.account.timeout)
                except (aiosmtplib.SMTPException, OSError):
                    self._disconnect()

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._client is None:
            self._client = await self._new_client()
        client = self._client
        if client.is_connected and time.monotonic() - self._last_used < _MAX_IDLE:
            return client
        client.close()
        await client.connect()
        return client

    async def _new_client(self) -> aiosmtplib.SMTP:
        """Made once and reconnected as needed: it keeps the EHLO name it looked up (a blocking getfqdn)."""
        account = self.account
        host, port = _relay(account)
        starttls = account.settings.get("starttls", "required")
        if starttls not in ("required", "none"):
            raise DeliveryError(
                f"account {account.name} has starttls={starttls!r}: use 'required', or 'none' for a local relay",
                Failure.BAD_CREDENTIALS,
            )
        username = account.settings.get("username") or None
        if username is not None and starttls == "none":
            raise DeliveryError(
                f"account {account.name} would send its password unencrypted: set starttls=required",
                Failure.BAD_CREDENTIALS,
            )
        return aiosmtplib.SMTP(
            hostname=host,
            port=port,
            username=username,
            password=account.secret("password") if username else None,
            timeout=account.timeout,
            start_tls=starttls == "required",
            tls_context=await _tls_context(account) if starttls == "required" else None,
        )

    def _disconnect(self) -> None:
        """Drop a session whose state is unknown (a timeout mid-command, a lost connection)."""
        if self._client is not None:
            self._client.close()


async def _tls_context(account: Account) -> ssl.SSLContext:
    ca_file = account.settings.get("tls_ca_file") or None
    try:
        return await asyncio.to_thread(ssl.create_default_context, cafile=ca_file)
    except OSError as e:
        raise DeliveryError(
            f"account {account.name} cannot load tls_ca_file {ca_file}: {e}", Failure.BAD_CREDENTIALS
        ) from e


def _relay(account: Account) -> tuple[str, int]:
    endpoint = account.url(DEFAULT_ENDPOINT)
    parts = urlsplit(f"//{endpoint}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path or parts.username:
        raise DeliveryError(
            f"account {account.name} endpoint {endpoint!r} is not host:port: "
            "an SMTP account must name its relay, e.g. smtp.example.com:587",
            Failure.BAD_CREDENTIALS,
        )
    return parts.hostname, port


def _refused(
    account: Account, sender: Address, e: aiosmtplib.SMTPResponseException | aiosmtplib.SMTPRecipientsRefused
) -> DeliveryError:
    """Which command the relay refused says whose problem it is: the connection, login and sender are the
    same for every message of this account; the recipient and the message are this delivery's own."""
    if isinstance(e, aiosmtplib.SMTPRecipientsRefused):
        e = e.recipients[0]
    match e:
        case aiosmtplib.SMTPAuthenticationError():
            stage = f"refused the login of user {account.settings.get('username', '')!r}"
        case aiosmtplib.SMTPSenderRefused():
            stage = f"refused the sender {sender.addr_spec}"
        case aiosmtplib.SMTPRecipientRefused():
            stage = "refused the recipient"
        case aiosmtplib.SMTPDataError():
            stage = "refused the message"
        case _:
            stage = "refused the connection"
    text = mask(" ".join(e.message.split()))
    reason = f"{account.name} {stage}: {e.code} {text}"
    return DeliveryError(reason, _failure(e, text))


def _failure(e: aiosmtplib.SMTPResponseException, text: str) -> Failure:
    found = _ENHANCED_STATUS.match(text)
    status = found.group() if found else ""
    if e.code in _AUTH_CODES:
        return Failure.BAD_CREDENTIALS
    if e.code < 500:
        # 454 4.7.0 is RFC 4954's temporary authentication failure, not a policy deferral.
        if _THROTTLING.search(text) or (status.startswith("4.7.") and e.code != 454):
            return Failure.RATE_LIMITED
        return Failure.RETRYABLE
    if isinstance(e, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return Failure.DEAD_ADDRESS if status in _DEAD_MAILBOX else Failure.PERMANENT
    # 552 at MAIL is the SIZE parameter: this message is too big, the next may not be.
    if isinstance(e, aiosmtplib.SMTPSenderRefused) and e.code == 552:
        return Failure.PERMANENT
    return Failure.BAD_CREDENTIALS


def _unsent(account: Account, e: aiosmtplib.SMTPException | OSError) -> DeliveryError:
    """No reply to read: the relay could not be reached, went quiet, or the session could not be secured."""
    match e:
        case TimeoutError():
            return DeliveryError(f"{account.name} timed out after {account.timeout:g}s", Failure.RETRYABLE)
        case ssl.SSLError():
            return DeliveryError(f"{account.name} TLS handshake failed: {e}", Failure.BAD_CREDENTIALS)
        case aiosmtplib.SMTPNotSupported():
            return DeliveryError(f"{account.name} cannot take this message: {e}", Failure.PERMANENT)
        case aiosmtplib.SMTPException() if not isinstance(e, ConnectionError):
            # STARTTLS or AUTH not offered: sending anyway would expose the mail or the password.
            return DeliveryError(f"{account.name} relay cannot be used: {e}", Failure.BAD_CREDENTIALS)
        case _:
            return DeliveryError(f"{account.name} unreachable: {e}", Failure.RETRYABLE)
