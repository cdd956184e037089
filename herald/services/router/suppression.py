"""Whether a delivery goes out now: the router's rules, asked in order, the first that objects deciding.

The order is the behaviour: an expired delivery is settled before anything is counted; opt-outs, missing
addresses and suppressed ones leave the channel unusable (the next of its chain is tried) before the dedup and
frequency logs count the delivery; quiet hours are asked last, so a held delivery has already claimed its place in
both logs.
"""

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from herald.v1 import common_pb2

from herald.internal.v1 import work_pb2
from herald.libs.timeutil import from_timestamp, now
from herald.services.router.recipients import Recipients

S = common_pb2


@dataclass(frozen=True)
class Settle:
    """The delivery ends here, in `state`."""

    state: common_pb2.DeliveryState.ValueType
    reason: str
    code: str = ""


@dataclass(frozen=True)
class Unusable:
    """The channel cannot be used for this recipient: the next of the chain is tried, else SUPPRESSED."""

    code: str
    reason: str


@dataclass(frozen=True)
class Hold:
    """SCHEDULED until `until`, then released and sent."""

    until: datetime
    reason: str


Verdict = Settle | Unusable | Hold


class Dedup(Protocol):
    window: float

    async def first(self, job: work_pb2.DeliveryJob) -> bool: ...


class Caps(Protocol):
    async def admit(self, job: work_pb2.DeliveryJob) -> str: ...


class Listed(Protocol):
    """The suppression list's word on the addresses being routed to, read before the rules run."""

    def reason(self, job: work_pb2.DeliveryJob) -> str: ...


class Suppressions(Protocol):
    async def lookup(self, jobs: Iterable[work_pb2.DeliveryJob]) -> Listed: ...


@dataclass(frozen=True)
class Facts:
    """What the rules ask about: the recipients, the suppression list's entries for their addresses, and the logs
    that count deliveries (asking them counts)."""

    recipients: Recipients
    listed: Listed
    dedup: Dedup
    caps: Caps


@dataclass(frozen=True)
class Rule:
    """One question routing asks; `code` is the reason code of the SUPPRESSED it gives ("" for other states)."""

    name: str
    code: str
    check: Callable[[work_pb2.DeliveryJob, Facts], Awaitable[Verdict | None]]


async def _expired(job: work_pb2.DeliveryJob, facts: Facts) -> Verdict | None:
    expire_at = from_timestamp(job.expire_at)
    if expire_at is not None and expire_at <= now():
        return Settle(S.DELIVERY_STATE_EXPIRED, "expire_at passed before routing")
    return None


async def _opted_out(job: work_pb2.DeliveryJob, facts: Facts) -> Verdict | None:
    return Unusable("opted_out", why) if (why := facts.recipients.opted_out(job)) else None


async def _no_address(job: work_pb2.DeliveryJob, facts: Facts) -> Verdict | None:
    return Unusable("no_address", why) if (why := facts.recipients.no_address(job)) else None


async def _suppressed(job: work_pb2.DeliveryJob, facts: Facts) -> Verdict | None:
    return Unusable("suppressed", why) if (why := facts.listed.reason(job)) else None


async def _duplicate(job: work_pb2.DeliveryJob, facts: Facts) -> Verdict | None:
    if await facts.dedup.first(job):
        return None
    reason = f"duplicate: the same content went to this recipient on {job.channel}"
    return Settle(S.DELIVERY_STATE_SUPPRESSED, f"{reason} within the last {facts.dedup.window:g}s", "duplicate")


async def _frequency_cap(job: work_pb2.DeliveryJob, facts: Facts) -> Verdict | None:
    return Settle(S.DELIVERY_STATE_SUPPRESSED, why, "frequency_cap") if (why := await facts.caps.admit(job)) else None


async def _quiet_hours(job: work_pb2.DeliveryJob, facts: Facts) -> Verdict | None:
    if not (until := facts.recipients.quiet_until(job)):
        return None
    clock = until.strftime("%H:%M %Z")
    expire_at = from_timestamp(job.expire_at)
    if expire_at and expire_at <= until:
        return Settle(S.DELIVERY_STATE_EXPIRED, f"quiet hours until {clock} end after expire_at")
    return Hold(until, f"quiet hours: held until {clock}")


RULES: tuple[Rule, ...] = (
    Rule("expired", "", _expired),
    Rule("opted out", "opted_out", _opted_out),
    Rule("no address (none given, or the directory's reported dead)", "no_address", _no_address),
    Rule("address on the suppression list", "suppressed", _suppressed),
    Rule("duplicate content", "duplicate", _duplicate),
    Rule("frequency cap", "frequency_cap", _frequency_cap),
    Rule("quiet hours", "", _quiet_hours),
)


async def verdict(job: work_pb2.DeliveryJob, facts: Facts) -> Verdict | None:
    """The first rule's objection, or None when the delivery goes out now; the rules after it are not asked."""
    for rule in RULES:
        if (found := await rule.check(job, facts)) is not None:
            return found
    return None


def without_unwanted_wake(job: work_pb2.DeliveryJob, recipients: Recipients) -> None:
    """No waking a user who opted out of push or is in their quiet hours: the inbox item goes alone."""
    if job.HasField("wake") and (recipients.opted_out(job.wake) or recipients.quiet_until(job.wake)):
        job.ClearField("wake")
