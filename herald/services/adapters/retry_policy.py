"""What a delivery comes to without the provider's say, and after a failed call: the retry policy, as pure
decisions over a job, its record and the time, so each rule is tested on its own.

A failed attempt is retried after the category's backoff (or the provider's Retry-After, if longer) until the
backoff runs out - then FAILED and dead-lettered - or until the next try would land after the job's expire_at -
then EXPIRED. Permanent failures and dead addresses end at once. A FAILED delivery whose provider cannot have
taken it falls back to the template's next channel.
"""

from dataclasses import replace
from datetime import datetime, timedelta

from herald.internal.v1 import work_pb2
from herald.libs.timeutil import from_timestamp
from herald.services.adapters import tables
from herald.services.adapters.attempt import Result, S
from herald.services.adapters.channels.base import DeliveryError, Failure

# Seconds to wait before each retry, in order; one more failure than it has entries gives up.
Backoff = tuple[float, ...]
# How soon a job whose delivery another batch of the process has in hand comes back to find its outcome.
IN_HAND_RETRY = 1.0


def replayed(job: work_pb2.DeliveryJob, record: tables.Delivery | None) -> bool:
    """An operator replayed the dead letter since the record was written: a new retry cycle begins."""
    return record is not None and job.replay > record.replay


def cycle_start(job: work_pb2.DeliveryJob, record: tables.Delivery | None) -> int:
    """The attempts on record when this retry cycle began: the backoff counts the attempts since."""
    if record is None:
        return 0
    return record.attempts if replayed(job, record) else record.cycle_start


def on_record(record: tables.Delivery) -> Result:
    """The outcome on record, with the follow-ups it had: publishing it again is idempotent (message ids)."""
    return Result(
        S.DeliveryState.ValueType(record.state),
        record.attempts,
        record.provider,
        record.provider_message_id,
        record.last_error,
        new=False,
        dead=record.dead_letter,
        may_fall_back=record.may_fall_back,
        address_dead=record.address_dead,
    )


def in_flight(record: tables.Delivery, sending_until: datetime, at: datetime) -> Result | None:
    """A call still under way elsewhere: the job waits until its mark runs out. None once it has."""
    return _waiting(record, sending_until, at)


def not_due(record: tables.Delivery, at: datetime) -> Result | None:
    """A job whose group came back for another job's retry before its own is due: it waits until then. None once
    it is due (or none is set)."""
    return None if record.retry_time is None else _waiting(record, record.retry_time, at)


def _waiting(record: tables.Delivery, until: datetime, at: datetime) -> Result | None:
    if until <= at:
        return None
    return Result(S.DELIVERY_STATE_PENDING, record.attempts, retry_in=(until - at).total_seconds(), new=False)


def unknown_outcome(record: tables.Delivery) -> Result:
    """A process died during a call to a provider that does not de-duplicate: it may have taken the delivery, so
    herald does not send it again nor fall back; an operator may replay the dead letter."""
    reason = (
        f"outcome unknown: herald-adapters stopped while {record.provider} was handling attempt "
        f"{record.attempts}; not sent again, so that nobody gets it twice (replay the dead letter to resend)"
    )
    return Result(
        S.DELIVERY_STATE_FAILED, record.attempts, record.provider, reason=reason, dead=True, may_fall_back=False
    )


def before_call(job: work_pb2.DeliveryJob, attempts: int, stop: str, at: datetime) -> Result | None:
    """The end of a job that must not be sent at all: its escalation was stopped, or its expire_at passed."""
    if stop:
        return Result(S.DELIVERY_STATE_CANCELLED, attempts, reason=stop, may_fall_back=False)
    expire_at = from_timestamp(job.expire_at)
    if expire_at is not None and expire_at <= at:
        return Result(S.DELIVERY_STATE_EXPIRED, attempts, reason="expire_at passed before it could be sent")
    return None


def in_hand_elsewhere() -> Result:
    """A job whose delivery another batch of this process is handling (a copy the router queued again, fetched
    while the first is still in hand): it waits for that outcome rather than calling the provider a second time,
    and finds it on record when it comes back."""
    return Result(S.DELIVERY_STATE_PENDING, 0, reason="handled in another batch", retry_in=IN_HAND_RETRY, new=False)


def paced(account: str, attempts: int, wait: float) -> Result:
    """A job held by its account's rate limit longer than it may wait in process: redelivered when it is due."""
    reason = f"held by {account}'s rate limit"
    return Result(S.DELIVERY_STATE_PENDING, attempts, reason=reason, retry_in=wait, new=False)


def after_failure(
    job: work_pb2.DeliveryJob,
    cycle_start: int,
    attempt: int,
    provider: str,
    error: DeliveryError,
    backoff: Backoff,
    at: datetime,
) -> Result:
    """What attempt number `attempt` failing with `error` at `at` makes of the delivery."""
    if error.failure in (Failure.PERMANENT, Failure.DEAD_ADDRESS):
        dead = error.failure is Failure.DEAD_ADDRESS
        return Result(S.DELIVERY_STATE_FAILED, attempt, provider, reason=error.reason, address_dead=dead)
    retry = attempt - cycle_start - 1
    if retry >= len(backoff):
        reason = f"gave up after {attempt} attempts: {error.reason}"
        return Result(S.DELIVERY_STATE_FAILED, attempt, provider, reason=reason, dead=True)
    delay = max(backoff[retry], error.retry_after or 0.0)
    expire_at = from_timestamp(job.expire_at)
    if expire_at is not None and at + timedelta(seconds=delay) >= expire_at:
        reason = f"expire_at passed while retrying; attempt {attempt} failed: {error.reason}"
        return Result(S.DELIVERY_STATE_EXPIRED, attempt, provider, reason=reason)
    reason = f"attempt {attempt} failed: {error.reason}; retrying in {delay:g}s"
    return Result(S.DELIVERY_STATE_PENDING, attempt, provider, reason=reason, retry_in=delay)


def no_account(
    job: work_pb2.DeliveryJob, cycle_start: int, attempt: int, error: DeliveryError, backoff: Backoff, at: datetime
) -> Result:
    """No account could take the job: retried like a failed call, and dead-lettered when it fails for good, so an
    operator can add an account and replay it."""
    result = after_failure(job, cycle_start, attempt, "", error, backoff, at)
    return replace(result, dead=True) if result.state == S.DELIVERY_STATE_FAILED else result


def falls_back(job: work_pb2.DeliveryJob, result: Result) -> bool:
    """The template's next channel takes over: a new failure the provider cannot have taken, and a fallback."""
    return result.state == S.DELIVERY_STATE_FAILED and result.may_fall_back and bool(job.fallback)


def with_fallback_reason(job: work_pb2.DeliveryJob, result: Result) -> Result:
    """The reason names the channel taking over, for whoever reads the delivery's status."""
    if result.new and falls_back(job, result):
        return replace(result, reason=f"{result.reason}; falling back to {job.fallback[0].channel}")
    return result
