"""The retry policy on its own: what a failed attempt, a job's expire_at, an escalation stop, a rate limit and a
record left in flight make of a delivery - the decisions the deliverer takes, without a provider or a bus."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from herald.v1 import common_pb2

from herald.internal.v1 import work_pb2
from herald.libs.timeutil import to_timestamp
from herald.services.adapters import retry_policy, tables
from herald.services.adapters.attempt import Result
from herald.services.adapters.channels.base import DeliveryError, Failure

S = common_pb2
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# The shape of the tests' notification schedule: three retries, growing.
BACKOFF = (0.5, 1.0, 1.0)


def job(**fields: Any) -> work_pb2.DeliveryJob:
    return work_pb2.DeliveryJob(delivery_id="msg_01.0", message_id="msg_01", channel="webhook", **fields)


def record(**fields: object) -> tables.Delivery:
    defaults: dict[str, object] = {
        "delivery_id": "msg_01.0",
        "state": S.DELIVERY_STATE_PENDING,
        "attempts": 1,
        "provider": "twilio-us",
        "provider_message_id": "",
        "last_error": "",
        "replay": 0,
        "cycle_start": 0,
        "dead_letter": False,
        "address_dead": False,
        "may_fall_back": True,
    }
    return tables.Delivery(**(defaults | fields))


def failed(attempt: int, error: DeliveryError, **fields: Any) -> Result:
    return retry_policy.after_failure(job(**fields), 0, attempt, "webhook", error, BACKOFF, AT)


OUTAGE = DeliveryError("webhook endpoint answered HTTP 502", Failure.RETRYABLE)


@pytest.mark.parametrize(("attempt", "delay"), [(1, 0.5), (2, 1.0), (3, 1.0)])
def test_a_retryable_failure_is_retried_after_the_categorys_backoff(attempt: int, delay: float) -> None:
    result = failed(attempt, OUTAGE)
    assert (result.state, result.retry_in, result.new, result.dead) == (S.DELIVERY_STATE_PENDING, delay, True, False)
    assert result.reason == f"attempt {attempt} failed: webhook endpoint answered HTTP 502; retrying in {delay:g}s"
    assert (result.attempts, result.provider) == (attempt, "webhook")


def test_after_the_last_retry_the_delivery_fails_and_is_dead_lettered() -> None:
    result = failed(len(BACKOFF) + 1, OUTAGE)
    assert (result.state, result.dead, result.retry_in) == (S.DELIVERY_STATE_FAILED, True, None)
    assert result.reason == "gave up after 4 attempts: webhook endpoint answered HTTP 502"
    assert result.may_fall_back, "the template's fallback chain takes over"


def test_a_replay_starts_a_new_cycle_of_retries_and_attempts_keep_counting() -> None:
    replay = job(replay=1)
    dead = record(state=S.DELIVERY_STATE_FAILED, attempts=4, cycle_start=0, replay=0)
    assert retry_policy.replayed(replay, dead)
    start = retry_policy.cycle_start(replay, dead)
    assert start == 4
    result = retry_policy.after_failure(replay, start, 5, "webhook", OUTAGE, BACKOFF, AT)
    assert (result.state, result.retry_in) == (S.DELIVERY_STATE_PENDING, 0.5)
    assert not retry_policy.replayed(job(replay=1), record(replay=1))
    assert retry_policy.cycle_start(job(replay=1), record(replay=1, cycle_start=4, attempts=6)) == 4
    assert retry_policy.cycle_start(job(), None) == 0


def test_the_providers_retry_after_is_kept_when_longer_than_the_backoff() -> None:
    slow_down = DeliveryError("slow down", Failure.RATE_LIMITED, retry_after=7.0)
    assert failed(1, slow_down).retry_in == 7.0
    assert failed(1, DeliveryError("slow down", Failure.RATE_LIMITED, retry_after=0.1)).retry_in == 0.5


def test_a_retry_that_would_land_after_expire_at_expires_instead() -> None:
    expire = to_timestamp(AT + timedelta(seconds=0.9))
    assert failed(1, OUTAGE, expire_at=expire).state == S.DELIVERY_STATE_PENDING
    result = failed(2, OUTAGE, expire_at=expire)
    assert (result.state, result.dead, result.retry_in) == (S.DELIVERY_STATE_EXPIRED, False, None)
    assert result.reason == "expire_at passed while retrying; attempt 2 failed: webhook endpoint answered HTTP 502"


@pytest.mark.parametrize(("failure", "address_dead"), [(Failure.PERMANENT, False), (Failure.DEAD_ADDRESS, True)])
def test_a_permanent_failure_or_dead_address_ends_at_once(failure: Failure, address_dead: bool) -> None:
    result = failed(1, DeliveryError("Unregistered", failure))
    assert (result.state, result.reason, result.dead) == (S.DELIVERY_STATE_FAILED, "Unregistered", False)
    assert result.address_dead == address_dead


def test_with_no_account_to_try_a_job_retries_then_is_dead_lettered() -> None:
    none = DeliveryError("no sms account can reach +1555", Failure.RETRYABLE)
    waiting = retry_policy.no_account(job(), 0, 1, none, BACKOFF, AT)
    assert (waiting.state, waiting.provider, waiting.dead) == (S.DELIVERY_STATE_PENDING, "", False)
    permanent = DeliveryError("no sms account can reach +1555", Failure.PERMANENT)
    given_up = retry_policy.no_account(job(), 0, 1, permanent, BACKOFF, AT)
    assert (given_up.state, given_up.dead) == (S.DELIVERY_STATE_FAILED, True)


def test_a_stopped_escalation_is_cancelled_and_an_expired_job_is_not_sent() -> None:
    stop = "escalation stopped: msg_01.0 was read at 2026-03-01T11:59:00+00:00"
    cancelled = retry_policy.before_call(job(), 0, stop, AT)
    assert cancelled is not None
    assert (cancelled.state, cancelled.reason, cancelled.may_fall_back) == (S.DELIVERY_STATE_CANCELLED, stop, False)
    late = retry_policy.before_call(job(expire_at=to_timestamp(AT)), 2, "", AT)
    assert late is not None
    assert (late.state, late.attempts, late.reason) == (
        S.DELIVERY_STATE_EXPIRED,
        2,
        "expire_at passed before it could be sent",
    )
    assert retry_policy.before_call(job(expire_at=to_timestamp(AT + timedelta(seconds=1))), 0, "", AT) is None


def test_a_job_held_by_its_accounts_rate_limit_waits_without_a_new_outcome() -> None:
    held = retry_policy.paced("twilio-us", 0, 3.5)
    assert (held.state, held.retry_in, held.new) == (S.DELIVERY_STATE_PENDING, 3.5, False)
    assert held.reason == "held by twilio-us's rate limit"


def test_a_record_in_flight_waits_for_its_mark_then_is_failed_as_unknown() -> None:
    marked = record(attempts=2, sending_until=AT + timedelta(seconds=4))
    waiting = retry_policy.in_flight(marked, AT + timedelta(seconds=4), AT)
    assert waiting is not None and (waiting.state, waiting.retry_in, waiting.new) == (
        S.DELIVERY_STATE_PENDING,
        4.0,
        False,
    )
    assert retry_policy.in_flight(marked, AT, AT) is None
    unknown = retry_policy.unknown_outcome(marked)
    assert (unknown.state, unknown.attempts, unknown.provider) == (S.DELIVERY_STATE_FAILED, 2, "twilio-us")
    assert unknown.dead and not unknown.may_fall_back, "the provider may have taken it: no second channel either"
    assert unknown.reason.startswith("outcome unknown: herald-adapters stopped while twilio-us was handling attempt 2")


def test_a_failure_falls_back_only_where_the_provider_cannot_have_taken_it() -> None:
    chained = job(fallback=[work_pb2.DeliveryJob(channel="sms")])
    gave_up = failed(4, OUTAGE)
    assert retry_policy.falls_back(chained, gave_up)
    assert retry_policy.with_fallback_reason(chained, gave_up).reason == f"{gave_up.reason}; falling back to sms"
    assert not retry_policy.falls_back(job(), gave_up), "no chain, nothing to fall back to"
    unknown = retry_policy.unknown_outcome(record())
    assert not retry_policy.falls_back(chained, unknown)
    assert retry_policy.with_fallback_reason(chained, unknown) == unknown
    retrying = failed(1, OUTAGE)
    assert not retry_policy.falls_back(chained, retrying)
    # An outcome already on record is published again with its fallback, but its reason is not extended twice.
    again = retry_policy.on_record(record(state=S.DELIVERY_STATE_FAILED, last_error="gave up", dead_letter=True))
    assert retry_policy.falls_back(chained, again)
    assert retry_policy.with_fallback_reason(chained, again).reason == "gave up"
