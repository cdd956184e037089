"""The adapters' consumer: one durable consumer per channel, so a slow channel never stalls another.

Each job's outcome is written to adapters_deliveries before its status event is
published and before the ack; a redelivered job whose record is already final
re-publishes that outcome (same event id) instead of calling the provider again.
"""

from datetime import timedelta

import structlog
from herald.v1 import common_pb2, events_pb2

from libs import events
from libs.bus import Bus, Incoming, RetryLater
from libs.masking import mask
from libs.store import Database
from libs.timeutil import from_timestamp, now
from services.adapters import tables
from services.adapters.channels.base import Channel, DeliveryError, Sent

log = structlog.get_logger()

MAX_ATTEMPTS = 5
# Delay after attempt n (1-based) before attempt n+1.
BACKOFF = (timedelta(seconds=1), timedelta(seconds=5), timedelta(seconds=30), timedelta(minutes=2))
FINAL = frozenset({common_pb2.DELIVERY_STATE_SENT, common_pb2.DELIVERY_STATE_FAILED, common_pb2.DELIVERY_STATE_EXPIRED})


class Deliverer:
    def __init__(self, db: Database, bus: Bus, channel: str, adapter: Channel | None) -> None:
        self._db = db
        self._bus = bus
        self._channel = channel
        self._adapter = adapter

    async def handle(self, incoming: Incoming) -> None:
        job = events_pb2.DeliveryJob.FromString(incoming.data)
        async with self._db.session() as session:
            record = await session.get(tables.Delivery, job.delivery_id)
        if record is not None and record.state in FINAL:
            await self._announce(job, record)
            return
        attempt = (record.attempts if record else 0) + 1
        expire_at = from_timestamp(job.expire_at)
        if expire_at is not None and expire_at <= now():
            await self._finish(job, common_pb2.DELIVERY_STATE_EXPIRED, attempt - 1, "", "expire_at passed")
            return
        if self._adapter is None:
            reason = f"channel '{self._channel}' is not available in this herald build"
            await self._finish(job, common_pb2.DELIVERY_STATE_FAILED, attempt - 1, "", reason)
            return
        try:
            sent = await self._adapter.send(job)
        except DeliveryError as e:
            await self._failed_attempt(job, attempt, e)
            return
        await self._finish(job, common_pb2.DELIVERY_STATE_SENT, attempt, sent.provider, "", sent)

    async def _failed_attempt(self, job: events_pb2.DeliveryJob, attempt: int, error: DeliveryError) -> None:
        log.info("attempt failed", delivery_id=job.delivery_id, attempt=attempt, reason=mask(error.reason))
        if not error.retryable or attempt >= MAX_ATTEMPTS:
            reason = error.reason if not error.retryable else f"gave up after {attempt} attempts: {error.reason}"
            await self._finish(job, common_pb2.DELIVERY_STATE_FAILED, attempt, error.provider, reason)
            return
        delay = BACKOFF[min(attempt, len(BACKOFF)) - 1].total_seconds()
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        await self._record(job, common_pb2.DELIVERY_STATE_PENDING, attempt, error.provider, error.reason)
        reason = f"attempt {attempt} failed: {error.reason}; retrying in {delay:g}s"
        await events.publish(
            self._bus, job, common_pb2.DELIVERY_STATE_PENDING, attempt=attempt, reason=reason, provider=error.provider
        )
        raise RetryLater(delay, reason)

    async def _finish(
        self,
        job: events_pb2.DeliveryJob,
        state: common_pb2.DeliveryState.ValueType,
        attempts: int,
        provider: str,
        reason: str,
        sent: Sent | None = None,
    ) -> None:
        record = await self._record(job, state, attempts, provider, reason, sent)
        await self._announce(job, record)

    async def _record(
        self,
        job: events_pb2.DeliveryJob,
        state: common_pb2.DeliveryState.ValueType,
        attempts: int,
        provider: str,
        reason: str,
        sent: Sent | None = None,
    ) -> tables.Delivery:
        async with self._db.session.begin() as session:
            record = await session.get(tables.Delivery, job.delivery_id, with_for_update=True)
            if record is None:
                record = tables.Delivery(delivery_id=job.delivery_id)
                session.add(record)
            record.state = state
            record.attempts = attempts
            record.provider = provider
            record.provider_message_id = sent.provider_message_id if sent else ""
            record.last_error = reason
            record.update_time = now()
        return record

    async def _announce(self, job: events_pb2.DeliveryJob, record: tables.Delivery) -> None:
        await events.publish(
            self._bus,
            job,
            common_pb2.DeliveryState.ValueType(record.state),
            attempt=record.attempts,
            reason=record.last_error,
            provider=record.provider,
            provider_message_id=record.provider_message_id,
        )
