"""The adapters' consumer: one durable consumer per category and channel, so neither a slow channel nor a
flood of marketing stalls anything else.

For each fetched batch:
1. Read the delivery records. A job whose record is final re-publishes that outcome (same event id) and is
   acked: the provider is not called again.
2. Plan each job. A record still marked in flight past its deadline means a process died during the provider
   call, so the provider may have taken the delivery: a provider that de-duplicates on our key (the delivery
   id) gets the same call again; any other is not called again - the delivery is FAILED with "outcome
   unknown" and dead-lettered, for an operator to replay on purpose. Otherwise an account is chosen (priority,
   weight, circuit breaker) and its rate limit paced, across every adapters process (libs/rate_limit.py).
3. Mark every planned call in flight, in one transaction: no provider is called before that mark is durable.
   Calls to providers that de-duplicate on our key are not marked; a crash leads to the same call again.
4. Call the providers concurrently.
5. Record every outcome in one transaction, then publish the status events, dead letters and fallbacks, then
   ack, or nak with the retry delay (JetStream holds the job until then).
"""

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog
from herald.v1 import common_pb2, dead_letter_service_pb2, events_pb2
from prometheus_client import Counter, Histogram
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from libs import categories, events, metrics, subjects, telemetry
from libs.bus import ACK, Bus, Incoming, Outcome
from libs.masking import mask
from libs.rate_limit import RateLimiter
from libs.store import Database
from libs.timeutil import from_timestamp, now, to_timestamp
from services.adapters import tables
from services.adapters.accounts import Accounts, Price, Route
from services.adapters.channels.base import DeliveryError, Failure
from services.adapters.tracking import Tracker

log = structlog.get_logger()

S = common_pb2
FINAL = frozenset(
    {S.DELIVERY_STATE_SENT, S.DELIVERY_STATE_FAILED, S.DELIVERY_STATE_EXPIRED, S.DELIVERY_STATE_CANCELLED}
)
# Longest a call waits in process for its account's rate limit; a longer wait naks the job until then.
MAX_PACING_WAIT = 2.0
# What SREs alert on, per provider account: how its calls end and how long they take.
PROVIDER_CALLS = Counter(
    "herald_provider_calls_total",
    "Provider calls by account and outcome: sent, retryable, permanent, rate_limited, bad_credentials, dead_address.",
    ["account", "outcome"],
)
PROVIDER_CALL_SECONDS = Histogram(
    "herald_provider_call_seconds", "How long provider calls take, by channel and account.", ["channel", "account"]
)
# What each attempt came to, per channel: sent, failed (for good), expired, retrying; dead_lettered counts the
# failed ones kept for an operator's replay.
DELIVERIES = Counter(
    "herald_adapters_deliveries_total",
    "Delivery attempts' outcomes by channel and category: sent, failed, expired, retrying, dead_lettered.",
    ["channel", "category", "outcome"],
)
# Each delivery's W3C traceparent, by delivery id.
Traces = Mapping[str, str]
# Beyond the call's own timeout, how long an in-flight mark is trusted before it counts as a crash.
IN_FLIGHT_MARGIN = timedelta(seconds=5)


@dataclass(frozen=True)
class Result:
    state: common_pb2.DeliveryState.ValueType
    attempts: int
    provider: str = ""
    provider_message_id: str = ""
    reason: str = ""
    # Set while retrying: redeliver the job after this many seconds.
    retry_in: float | None = None
    # False when nothing new happened: the outcome is already on record, or the job only waits.
    new: bool = True
    # Goes to the dead-letter stream (FAILED after its retries, or with an unknown outcome).
    dead: bool = False
    # The template's fallback may take over (not when the provider may have taken it after all).
    may_fall_back: bool = True
    # The provider said the address no longer exists: the directory should stop using it.
    address_dead: bool = False


@dataclass(frozen=True)
class Call:
    route: Route
    attempt: int
    # `attempts` when this retry cycle began (a replay from the dead letters starts a new one).
    cycle_start: int
    # Seconds to wait for the account's rate limit before calling.
    wait: float = 0.0


class Deliverer:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        accounts: Accounts,
        backoff: Mapping[common_pb2.Category.ValueType, tuple[float, ...]],
        limiter: RateLimiter,
        tracker: Tracker,
    ) -> None:
        self._tracker = tracker
        self._db = db
        self._bus = bus
        self._accounts = accounts
        self._backoff = backoff
        self._limiter = limiter

    async def handle(self, batch: list[Incoming]) -> list[Outcome]:
        jobs = [events_pb2.DeliveryJob.FromString(i.data) for i in batch]
        records = await self._load(j.delivery_id for j in jobs)
        first = {j.delivery_id: n for n, j in reversed(list(enumerate(jobs)))}
        work = [(i, j) for n, (i, j) in enumerate(zip(batch, jobs, strict=True)) if first[j.delivery_id] == n]
        for incoming, job in work:  # so that ops find a delivery's trace in Jaeger from its ids
            incoming.span.set_attributes({"herald.message_id": job.message_id, "herald.delivery_id": job.delivery_id})
        # Where each delivery's trace is, for the receipts that come long after (receipts.py links to it).
        traces = {j.delivery_id: telemetry.traceparent(i.span) for i, j in work}
        stopped = await self._stopped([j for _, j in work if j.stop_on])
        plans = [await self._plan(j, records.get(j.delivery_id), stopped.get(j.delivery_id, "")) for _, j in work]
        # A provider that de-duplicates on our key needs no mark: after a crash it simply gets the same call again.
        marked = [
            (j, p)
            for (_, j), p in zip(work, plans, strict=True)
            if isinstance(p, Call) and not p.route.provider.idempotent
        ]
        await self._mark_in_flight(marked, traces)
        results = await asyncio.gather(*(self._settle(i, j, p) for (i, j), p in zip(work, plans, strict=True)))
        unrecorded = {j.delivery_id for _, j in work} - records.keys() - {j.delivery_id for j, _ in marked}
        await self._store([(j, r) for (_, j), r in zip(work, results, strict=True) if r.new], unrecorded, traces)
        for (_, job), result in zip(work, results, strict=True):
            if result.new:
                _count(job, result)
        await asyncio.gather(*(self._announce(i, j, r) for (i, j), r in zip(work, results, strict=True)))
        retry = {j.delivery_id: r.retry_in for (_, j), r in zip(work, results, strict=True)}
        # A job repeated within the batch is settled by its first copy.
        return [retry[j.delivery_id] if first[j.delivery_id] == n else ACK for n, j in enumerate(jobs)]

    async def _plan(self, job: events_pb2.DeliveryJob, record: tables.Delivery | None, stop: str) -> Result | Call:
        replayed = record is not None and job.replay > record.replay
        if record is not None and not replayed:
            if record.state in FINAL:
                return _on_record(record)
            if record.sending_until is not None:
                return self._resume(record, record.sending_until)
        attempts = record.attempts if record else 0
        if stop:
            return Result(S.DELIVERY_STATE_CANCELLED, attempts, reason=stop, may_fall_back=False)
        cycle_start = attempts if replayed else (record.cycle_start if record else 0)
        expire_at = from_timestamp(job.expire_at)
        if expire_at is not None and expire_at <= now():
            return Result(S.DELIVERY_STATE_EXPIRED, attempts, reason="expire_at passed before it could be sent")
        try:
            route = self._accounts.choose(job.channel, job.address)
        except DeliveryError as e:  # no account to try: an operator can add one and replay the dead letter
            result = self._failed(job, cycle_start, attempts + 1, "", e)
            return replace(result, dead=True) if result.state == S.DELIVERY_STATE_FAILED else result
        if route.rate > 0:
            wait = await self._limiter.reserve(f"account.{route.account.name}", route.rate, MAX_PACING_WAIT)
            if wait > MAX_PACING_WAIT:
                if route.breaker is not None:
                    route.breaker.cancel()
                reason = f"held by {route.account.name}'s rate limit"
                return Result(S.DELIVERY_STATE_PENDING, attempts, reason=reason, retry_in=wait, new=False)
            return Call(route, attempts + 1, cycle_start, wait)
        return Call(route, attempts + 1, cycle_start)

    def _resume(self, record: tables.Delivery, sending_until: datetime) -> Result | Call:
        """A record marked in flight: another call is under way, or a process died during one."""
        if sending_until > now():
            wait = (sending_until - now()).total_seconds()
            return Result(S.DELIVERY_STATE_PENDING, record.attempts, retry_in=wait, new=False)
        route = self._accounts.named(record.provider)
        if route is not None and route.provider.idempotent:
            return Call(route, record.attempts, record.cycle_start)
        reason = (
            f"outcome unknown: herald-adapters stopped while {record.provider} was handling attempt "
            f"{record.attempts}; not sent again, so that nobody gets it twice (replay the dead letter to resend)"
        )
        return Result(
            S.DELIVERY_STATE_FAILED, record.attempts, record.provider, reason=reason, dead=True, may_fall_back=False
        )

    async def _settle(self, incoming: Incoming, job: events_pb2.DeliveryJob, plan: Result | Call) -> Result:
        result = plan if isinstance(plan, Result) else await self._call(incoming, job, plan)
        if result.new and result.state == S.DELIVERY_STATE_FAILED and result.may_fall_back and job.fallback:
            return replace(result, reason=f"{result.reason}; falling back to {job.fallback[0].channel}")
        return result

    async def _call(self, incoming: Incoming, job: events_pb2.DeliveryJob, call: Call) -> Result:
        route = call.route
        if call.wait:
            await asyncio.sleep(call.wait)
        with incoming.active():
            started = time.perf_counter()
            try:
                sent = await route.provider.send(self._tracker.instrument(job))
            except DeliveryError as e:
                error = e
            except Exception:  # a bug in a provider plug-in: retry it like an outage, and say so
                log.exception("provider plug-in raised", provider=route.account.provider, delivery_id=job.delivery_id)
                error = DeliveryError(f"internal error in the {route.account.provider} plug-in", Failure.RETRYABLE)
            else:
                _observe(route, job.channel, started, "sent")
                if route.breaker is not None:
                    route.breaker.succeeded()
                return Result(S.DELIVERY_STATE_SENT, call.attempt, route.account.name, sent.provider_message_id)
        _observe(route, job.channel, started, error.failure.value)
        if route.breaker is not None:
            if error.failure in (Failure.RETRYABLE, Failure.BAD_CREDENTIALS):
                route.breaker.failed(at_once=error.failure is Failure.BAD_CREDENTIALS)
            else:  # the provider answered: it is up
                route.breaker.succeeded()
        return self._failed(job, call.cycle_start, call.attempt, route.account.name, error)

    def _failed(
        self,
        job: events_pb2.DeliveryJob,
        cycle_start: int,
        attempt: int,
        provider: str,
        error: DeliveryError,
    ) -> Result:
        log.info("attempt failed", delivery_id=job.delivery_id, attempt=attempt, reason=mask(error.reason))
        if error.failure in (Failure.PERMANENT, Failure.DEAD_ADDRESS):
            dead = error.failure is Failure.DEAD_ADDRESS
            return Result(S.DELIVERY_STATE_FAILED, attempt, provider, reason=error.reason, address_dead=dead)
        backoff = self._backoff[job.category]
        retry = attempt - cycle_start - 1
        if retry >= len(backoff):
            reason = f"gave up after {attempt} attempts: {error.reason}"
            return Result(S.DELIVERY_STATE_FAILED, attempt, provider, reason=reason, dead=True)
        delay = max(backoff[retry], error.retry_after or 0.0)
        expire_at = from_timestamp(job.expire_at)
        if expire_at is not None and now() + timedelta(seconds=delay) >= expire_at:
            reason = f"expire_at passed while retrying; attempt {attempt} failed: {error.reason}"
            return Result(S.DELIVERY_STATE_EXPIRED, attempt, provider, reason=reason)
        reason = f"attempt {attempt} failed: {error.reason}; retrying in {delay:g}s"
        return Result(S.DELIVERY_STATE_PENDING, attempt, provider, reason=reason, retry_in=delay)

    async def _stopped(self, steps: list[events_pb2.DeliveryJob]) -> dict[str, str]:
        """Escalation steps that must not go out, and why: a delivery before them was read or delivered."""
        if not steps:
            return {}
        earlier = {d for step in steps for d in step.stop_on}
        async with self._db.session() as session:
            read = await session.execute(
                select(tables.InboxItem.delivery_id, tables.InboxItem.read_time).where(
                    tables.InboxItem.delivery_id.in_(earlier), tables.InboxItem.read_time.is_not(None)
                )
            )
            delivered = await session.execute(
                select(tables.Delivery.delivery_id, tables.Delivery.delivered_time).where(
                    tables.Delivery.delivery_id.in_(earlier), tables.Delivery.delivered_time.is_not(None)
                )
            )
        seen = {d: f"read at {at.isoformat(timespec='seconds')}" for d, at in read if at}
        seen |= {d: f"delivered at {at.isoformat(timespec='seconds')}" for d, at in delivered if at}
        stopped = {}
        for step in steps:
            if found := next((d for d in step.stop_on if d in seen), None):
                stopped[step.delivery_id] = f"escalation stopped: {found} was {seen[found]}"
        return stopped

    async def _load(self, delivery_ids: Iterable[str]) -> dict[str, tables.Delivery]:
        async with self._db.session() as session:
            rows = await session.scalars(
                select(tables.Delivery).where(tables.Delivery.delivery_id.in_(set(delivery_ids)))
            )
            return {r.delivery_id: r for r in rows}

    async def _mark_in_flight(self, calls: list[tuple[events_pb2.DeliveryJob, Call]], traces: Traces) -> None:
        if not calls:
            return
        async with self._db.session.begin() as session:
            records = await _records(session, [j for j, _ in calls], traces)
            for record, (_, call) in zip(records, calls, strict=True):
                deadline = timedelta(seconds=call.wait + call.route.account.timeout) + IN_FLIGHT_MARGIN
                record.state = S.DELIVERY_STATE_PENDING
                record.attempts = call.attempt
                record.provider = call.route.account.name
                record.sending_until = now() + deadline
                record.update_time = now()

    async def _store(
        self, outcomes: list[tuple[events_pb2.DeliveryJob, Result]], unrecorded: set[str], traces: Traces
    ) -> None:
        """Record the outcomes: in one bulk insert for deliveries that had no record when the batch was read (the
        common case: a first attempt), through their records for the others. Should another replica have recorded
        one of those meanwhile, the whole batch goes through the records."""
        first = [(j, r) for j, r in outcomes if j.delivery_id in unrecorded]
        if first:
            try:
                async with self._db.session.begin() as session:
                    await session.execute(insert(tables.Delivery), [_first_record(j, r, traces) for j, r in first])
                    await self._update(
                        session, [(j, r) for j, r in outcomes if j.delivery_id not in unrecorded], traces
                    )
                return
            except IntegrityError:
                pass
        async with self._db.session.begin() as session:
            await self._update(session, outcomes, traces)

    @staticmethod
    async def _update(
        session: AsyncSession, outcomes: list[tuple[events_pb2.DeliveryJob, Result]], traces: Traces
    ) -> None:
        if not outcomes:
            return
        records = await _records(session, [j for j, _ in outcomes], traces)
        for record, (_, result) in zip(records, outcomes, strict=True):
            for column, value in _outcome(result).items():
                setattr(record, column, value)

    async def _announce(self, incoming: Incoming, job: events_pb2.DeliveryJob, result: Result) -> None:
        if not result.new and result.state not in FINAL:
            return
        price = self._accounts.price(result.provider) if result.state == S.DELIVERY_STATE_SENT else Price()
        with incoming.active():
            await events.publish(
                self._bus,
                events.event(
                    job,
                    result.state,
                    attempt=result.attempts,
                    reason=result.reason,
                    provider=result.provider,
                    provider_message_id=result.provider_message_id,
                    cost_micros=price.micros,
                    currency_code=price.currency_code,
                ),
            )
            if result.dead:
                record = dead_letter_service_pb2.DeadLetterRecord(
                    job=job,
                    attempts=result.attempts,
                    provider=result.provider,
                    reason=result.reason,
                    dead_time=to_timestamp(now()),
                )
                subject = subjects.dead_letter(job.category, job.channel)
                await self._bus.publish(
                    subject, record.SerializeToString(), msg_id=f"{job.delivery_id}.dead.{job.replay}"
                )
            if result.address_dead and job.user_id:
                await self._bus.publish(
                    subjects.ADDRESS_DEAD,
                    _dead_address(job, result).SerializeToString(),
                    msg_id=f"{job.delivery_id}.dead-address",
                )
            if result.state == S.DELIVERY_STATE_FAILED and result.may_fall_back and job.fallback:
                subject = subjects.fallback(job.category)
                await self._bus.publish(subject, job.SerializeToString(), msg_id=f"{job.delivery_id}.fallback")


def _observe(route: Route, channel: str, started: float, outcome: str) -> None:
    metrics.child(PROVIDER_CALL_SECONDS, channel, route.account.name).observe(time.perf_counter() - started)
    metrics.child(PROVIDER_CALLS, route.account.name, outcome).inc()


def _count(job: events_pb2.DeliveryJob, result: Result) -> None:
    outcome = "retrying" if result.state == S.DELIVERY_STATE_PENDING else events.state_name(result.state)
    category = categories.name(job.category)
    metrics.child(DELIVERIES, job.channel, category, outcome).inc()
    if result.dead:
        metrics.child(DELIVERIES, job.channel, category, "dead_lettered").inc()


def _dead_address(job: events_pb2.DeliveryJob, result: Result) -> events_pb2.DeadAddressEvent:
    return events_pb2.DeadAddressEvent(
        event_id=f"{job.delivery_id}.dead-address",
        user_id=job.user_id,
        channel=job.channel,
        address=job.address,
        delivery_id=job.delivery_id,
        provider=result.provider,
        reason=result.reason,
        occur_time=to_timestamp(now()),
    )


def _on_record(record: tables.Delivery) -> Result:
    """The outcome on record, with the follow-ups it had: publishing it again is idempotent (message ids)."""
    return Result(
        common_pb2.DeliveryState.ValueType(record.state),
        record.attempts,
        record.provider,
        record.provider_message_id,
        record.last_error,
        new=False,
        dead=record.dead_letter,
        may_fall_back=record.may_fall_back,
        address_dead=record.address_dead,
    )


def _identity(job: events_pb2.DeliveryJob, traces: Traces) -> dict[str, object]:
    """Who and what the delivery is, and the trace it was first handled in: a record's columns that never change."""
    return {
        "delivery_id": job.delivery_id,
        "message_id": job.message_id,
        "app_id": job.app_id,
        "template_id": job.template_id,
        "category": job.category,
        "user_id": job.user_id,
        "channel": job.channel,
        "traceparent": traces.get(job.delivery_id, ""),
    }


def _outcome(result: Result) -> dict[str, object]:
    """A record's columns as an outcome leaves them."""
    return {
        "state": result.state,
        "attempts": result.attempts,
        "provider": result.provider,
        "provider_message_id": result.provider_message_id,
        "last_error": result.reason,
        "dead_letter": result.dead,
        "address_dead": result.address_dead,
        "may_fall_back": result.may_fall_back,
        "sending_until": None,
        "update_time": now(),
    }


def _first_record(job: events_pb2.DeliveryJob, result: Result, traces: Traces) -> dict[str, object]:
    """The record of a delivery's first outcome, as _records would create it and _update fill it."""
    return _identity(job, traces) | _outcome(result) | {"replay": job.replay, "cycle_start": 0}


async def _records(session: AsyncSession, jobs: list[events_pb2.DeliveryJob], traces: Traces) -> list[tables.Delivery]:
    """The jobs' records, locked for this transaction, in job order: created where missing, and starting a new
    cycle where a job is a replay the record has not seen."""
    rows = await session.scalars(
        select(tables.Delivery).where(tables.Delivery.delivery_id.in_([j.delivery_id for j in jobs])).with_for_update()
    )
    found = {r.delivery_id: r for r in rows}
    records = []
    for job in jobs:
        record = found.get(job.delivery_id)
        if record is None:
            record = tables.Delivery(
                **_identity(job, traces),
                state=S.DELIVERY_STATE_PENDING,
                attempts=0,
                provider="",
                provider_message_id="",
                last_error="",
                update_time=now(),
                replay=0,
                cycle_start=0,
                dead_letter=False,
                address_dead=False,
                may_fall_back=True,
            )
            session.add(record)
        if job.replay > record.replay:
            record.replay, record.cycle_start = job.replay, record.attempts
        records.append(record)
    return records
