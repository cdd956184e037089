"""The adapters' consumer: one durable consumer per category and channel, so neither a slow channel nor a
flood of marketing stalls anything else.

A fetched batch is sent concurrently, then every outcome is written to
adapters_deliveries in one transaction, then the status events are published
(and a delivery that failed for good hands its fallback chain back to the
router), then the messages are acked. A redelivered job whose record is
already final re-publishes that outcome (same event id) instead of calling the
provider again.
"""

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta

import structlog
from herald.v1 import common_pb2, events_pb2
from sqlalchemy import select

from libs import events, subjects
from libs.bus import ACK, Bus, Incoming, Outcome
from libs.masking import mask
from libs.store import Database
from libs.timeutil import from_timestamp, now
from services.adapters import tables
from services.adapters.channels.base import Channel, DeliveryError

log = structlog.get_logger()

S = common_pb2
MAX_ATTEMPTS = 5
# Delay after attempt n (1-based) before attempt n+1; a provider's Retry-After can make it longer.
BACKOFF = (timedelta(seconds=1), timedelta(seconds=5), timedelta(seconds=30), timedelta(minutes=2))
FINAL = frozenset({S.DELIVERY_STATE_SENT, S.DELIVERY_STATE_FAILED, S.DELIVERY_STATE_EXPIRED})


@dataclass(frozen=True)
class Result:
    state: common_pb2.DeliveryState.ValueType
    attempts: int
    provider: str = ""
    provider_message_id: str = ""
    reason: str = ""
    # Set while retrying: redeliver the job after this many seconds.
    retry_in: float | None = None
    # False when the outcome is already on record (a redelivered job).
    new: bool = True


class Deliverer:
    def __init__(self, db: Database, bus: Bus, channel: str, adapter: Channel | None) -> None:
        self._db = db
        self._bus = bus
        self._channel = channel
        self._adapter = adapter

    async def handle(self, batch: list[Incoming]) -> list[Outcome]:
        jobs = [events_pb2.DeliveryJob.FromString(i.data) for i in batch]
        records = await self._load(j.delivery_id for j in jobs)
        first = {j.delivery_id: n for n, j in reversed(list(enumerate(jobs)))}
        work = [(i, j) for n, (i, j) in enumerate(zip(batch, jobs, strict=True)) if first[j.delivery_id] == n]
        results = await asyncio.gather(*(self._outcome(i, j, records.get(j.delivery_id)) for i, j in work))
        await self._store([(j, r) for (_, j), r in zip(work, results, strict=True) if r.new])
        await asyncio.gather(*(self._announce(i, j, r) for (i, j), r in zip(work, results, strict=True)))
        retry = {j.delivery_id: r.retry_in for (_, j), r in zip(work, results, strict=True)}
        # A job repeated within the batch is settled by its first copy.
        return [retry[j.delivery_id] if first[j.delivery_id] == n else ACK for n, j in enumerate(jobs)]

    async def _outcome(self, incoming: Incoming, job: events_pb2.DeliveryJob, record: tables.Delivery | None) -> Result:
        result = await self._attempt(incoming, job, record)
        if result.new and result.state == S.DELIVERY_STATE_FAILED and job.fallback:
            return replace(result, reason=f"{result.reason}; falling back to {job.fallback[0].channel}")
        return result

    async def _attempt(self, incoming: Incoming, job: events_pb2.DeliveryJob, record: tables.Delivery | None) -> Result:
        if record is not None and record.state in FINAL:
            state = common_pb2.DeliveryState.ValueType(record.state)
            return Result(
                state, record.attempts, record.provider, record.provider_message_id, record.last_error, new=False
            )
        attempt = (record.attempts if record else 0) + 1
        expire_at = from_timestamp(job.expire_at)
        if expire_at is not None and expire_at <= now():
            return Result(S.DELIVERY_STATE_EXPIRED, attempt - 1, reason="expire_at passed")
        if self._adapter is None:
            reason = f"channel '{self._channel}' is not available in this herald build"
            return Result(S.DELIVERY_STATE_FAILED, attempt - 1, reason=reason)
        with incoming.active():
            try:
                sent = await self._adapter.send(job)
            except DeliveryError as e:
                return self._failed(job, attempt, e)
            except Exception:  # a bug in a channel plug-in: retry it like an outage, and say so
                log.exception("channel adapter raised", channel=self._channel, delivery_id=job.delivery_id)
                error = DeliveryError(f"internal error in the {self._channel} adapter", provider="", retryable=True)
                return self._failed(job, attempt, error)
        return Result(S.DELIVERY_STATE_SENT, attempt, sent.provider, sent.provider_message_id)

    def _failed(self, job: events_pb2.DeliveryJob, attempt: int, error: DeliveryError) -> Result:
        log.info("attempt failed", delivery_id=job.delivery_id, attempt=attempt, reason=mask(error.reason))
        if not error.retryable:
            return Result(S.DELIVERY_STATE_FAILED, attempt, error.provider, reason=error.reason)
        if attempt >= MAX_ATTEMPTS:
            reason = f"gave up after {attempt} attempts: {error.reason}"
            return Result(S.DELIVERY_STATE_FAILED, attempt, error.provider, reason=reason)
        delay = BACKOFF[min(attempt, len(BACKOFF)) - 1].total_seconds()
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        reason = f"attempt {attempt} failed: {error.reason}; retrying in {delay:g}s"
        return Result(S.DELIVERY_STATE_PENDING, attempt, error.provider, reason=reason, retry_in=delay)

    async def _load(self, delivery_ids: Iterable[str]) -> dict[str, tables.Delivery]:
        async with self._db.session() as session:
            rows = await session.scalars(
                select(tables.Delivery).where(tables.Delivery.delivery_id.in_(set(delivery_ids)))
            )
            return {r.delivery_id: r for r in rows}

    async def _store(self, outcomes: list[tuple[events_pb2.DeliveryJob, Result]]) -> None:
        if not outcomes:
            return
        async with self._db.session.begin() as session:
            rows = await session.scalars(
                select(tables.Delivery)
                .where(tables.Delivery.delivery_id.in_([j.delivery_id for j, _ in outcomes]))
                .with_for_update()
            )
            records = {r.delivery_id: r for r in rows}
            for job, result in outcomes:
                record = records.get(job.delivery_id)
                if record is None:
                    record = tables.Delivery(delivery_id=job.delivery_id)
                    session.add(record)
                record.state = result.state
                record.attempts = result.attempts
                record.provider = result.provider
                record.provider_message_id = result.provider_message_id
                record.last_error = result.reason
                record.update_time = now()

    async def _announce(self, incoming: Incoming, job: events_pb2.DeliveryJob, result: Result) -> None:
        with incoming.active():
            await events.publish(
                self._bus,
                job,
                result.state,
                attempt=result.attempts,
                reason=result.reason,
                provider=result.provider,
                provider_message_id=result.provider_message_id,
            )
            if result.state == S.DELIVERY_STATE_FAILED and job.fallback:
                subject = subjects.fallback(job.category)
                await self._bus.publish(subject, job.SerializeToString(), msg_id=f"{job.delivery_id}.fallback")
