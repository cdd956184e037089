"""The shape every provider plug-in has: take a rendered delivery, return the provider's message id or raise a
classified error.

A channel (sms, email, ...) is served by one or more providers (twilio, alibaba_sms, ...). Each provider is a
class registered under the `herald.providers` entry-point group; the deliverer builds one instance per provider
account (configured over gRPC, `ProviderService`) and picks among a channel's accounts by priority, weight,
rate limit and circuit breaker. A plug-in never chooses an account, retries or sleeps: it makes one call and
says what happened.
"""

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import aiohttp

from herald.internal.v1 import work_pb2


class Failure(enum.Enum):
    # An outage, a timeout, a 5xx: the same call may work later.
    RETRYABLE = "retryable"
    # The provider refused this delivery (bad number, message too long): trying again cannot help.
    PERMANENT = "permanent"
    # The provider asked us to slow down; try again after `retry_after` seconds.
    RATE_LIMITED = "rate_limited"
    # The account's credentials were refused: another account may work, this one will not until fixed.
    BAD_CREDENTIALS = "bad_credentials"
    # The address no longer exists (an unregistered device token): the directory should forget it.
    DEAD_ADDRESS = "dead_address"


class DeliveryError(Exception):
    """The provider did not take the delivery. `reason` is shown to people: say what the provider said."""

    def __init__(self, reason: str, failure: Failure, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failure = failure
        self.retry_after = retry_after


@dataclass(frozen=True)
class Sent:
    provider_message_id: str = ""


@dataclass(frozen=True)
class Callback:
    """A delivery report as a provider posted it to herald's receipts endpoint (`/v1/receipts/<account>`)."""

    query: Mapping[str, str]
    # Header names in lower case.
    headers: Mapping[str, str]
    body: bytes


class AddressReport(enum.Enum):
    """What a report says of the address itself, beyond this one delivery (e-mail providers' feedback)."""

    # The mailbox does not exist: never send there again.
    HARD_BOUNCE = "hard_bounce"
    # Refused for now (mailbox full, greylisted): counted; enough of them suppress the address.
    SOFT_BOUNCE = "soft_bounce"
    # The reader marked the mail as spam: they want no more marketing.
    COMPLAINT = "complaint"


@dataclass(frozen=True)
class Receipt:
    """What the provider reported for one message it had taken: it reached the handset, or it never will."""

    provider_message_id: str
    # None when the report changes no delivery's state (a complaint about a mail already delivered).
    delivered: bool | None
    reason: str = ""
    address_report: AddressReport | None = None
    # The address the report is about, as the provider names it (the bounced recipient); "" = the delivery's.
    address: str = ""


@dataclass(frozen=True)
class InboundText:
    """A text a recipient sent to one of the account's numbers (an SMS reply such as STOP)."""

    sender: str
    text: str


@dataclass(frozen=True)
class Receipts:
    # Only final reports; "queued" or "sent" by the carrier tell nothing herald does not know.
    reports: list[Receipt]
    # The body the provider expects back once the reports are taken.
    answer: str = ""
    content_type: str = "text/plain"


class ReceiptRefused(Exception):
    """The callback is not authentic (bad signature or token) or not in the provider's format."""


@dataclass(frozen=True)
class Account:
    """Where and as whom a provider sends. `secrets` were read from the environment variables the account
    names; they never leave the adapters process."""

    name: str
    provider: str
    # Base URL (host:port for SMTP); "" = the provider's public endpoint (the plug-in's DEFAULT_ENDPOINT).
    endpoint: str = ""
    settings: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    # Seconds one provider call may take before it counts as timed out (a retryable failure).
    timeout: float = 10.0

    def url(self, default: str) -> str:
        return (self.endpoint or default).rstrip("/")

    def setting(self, key: str) -> str:
        """A required non-secret setting; its absence is a configuration error the account's owner must fix."""
        value = self.settings.get(key, "")
        if not value:
            raise DeliveryError(f"account {self.name} has no '{key}' setting", Failure.BAD_CREDENTIALS)
        return value

    def secret(self, key: str) -> str:
        value = self.secrets.get(key, "")
        if not value:
            raise DeliveryError(f"account {self.name} has no '{key}' credential", Failure.BAD_CREDENTIALS)
        return value


class Provider:
    """Base of every provider plug-in. Subclasses set `channel`, and `idempotent` when the provider
    de-duplicates on a key herald sends (the delivery id): only then may a delivery whose outcome was lost in
    a crash be sent again."""

    channel: ClassVar[str]
    idempotent: ClassVar[bool] = False
    # False when every delivery goes to an endpoint of its own (webhooks): one receiver failing says nothing
    # about the next, so such an account gets no circuit breaker.
    shared_endpoint: ClassVar[bool] = True

    def __init__(self, account: Account, http: aiohttp.ClientSession) -> None:
        self.account = account
        self.http = http

    @classmethod
    def accepts(cls, address: str) -> bool:
        """Whether this provider can deliver to `address`: a channel served by different kinds of provider (WeCom
        application messages and group robots) routes each delivery by it."""
        return True

    async def send(self, job: work_pb2.DeliveryJob) -> Sent:
        """Deliver once; raise DeliveryError when the provider refuses or cannot be reached."""
        raise NotImplementedError

    async def receipts(self, callback: Callback) -> Receipts:
        """Verify and read a delivery report the provider posted; raise ReceiptRefused if it is not authentic.
        Providers that report delivery override this."""
        raise ReceiptRefused(f"{self.account.provider} does not post delivery reports")

    def inbound(self, callback: Callback) -> InboundText:
        """Verify and read a text a recipient sent (the provider's inbound-message webhook); raise
        ReceiptRefused if it is not authentic. SMS providers that forward replies override this."""
        raise ReceiptRefused(f"{self.account.provider} does not forward replies")

    def reply(self, text: str) -> Receipts:
        """The answer to an inbound webhook that makes the provider text `text` back ("" = no reply)."""
        raise ReceiptRefused(f"{self.account.provider} does not forward replies")

    async def close(self) -> None:
        """Release connections the provider holds beyond the shared HTTP session."""
