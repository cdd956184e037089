"""Settling a delivery: the suppression rules' verdict carried out - queued for its channel's adapter, held for
quiet hours, settled, or handed to the next channel of its chain - and every state it takes announced."""

import asyncio
from typing import Protocol

from herald.v1 import common_pb2
from prometheus_client import Counter

from herald.internal.v1 import work_pb2
from herald.libs import categories, delivery_jobs, events, metrics, subjects
from herald.libs.bus import Publisher, Schedules
from herald.services.router import jobs, suppression
from herald.services.router.recipients import Recipients

S = common_pb2
# What routing decided for each delivery: queued (pending), held (scheduled), suppressed by reason code, expired,
# cancelled, failed (unrenderable). Bounded labels: categories, states and a handful of codes.
DECISIONS = Counter(
    "herald_router_decisions_total",
    "Deliveries the router settled, by category, outcome (the state it gave them) and reason code.",
    ("category", "outcome", "reason_code"),
)


class RoutingBus(Publisher, Schedules, Protocol):
    """What routing asks of the bus: publishing, and holding a delivery in a schedule."""


class Settler:
    def __init__(
        self,
        bus: RoutingBus,
        suppressions: suppression.Suppressions,
        dedup: suppression.Dedup,
        caps: suppression.Caps,
    ) -> None:
        self._bus = bus
        self._suppressions = suppressions
        self._dedup = dedup
        self._caps = caps
        # Each category publishes within its own bound, so a flood of one never waits in front of another.
        self._publishing = {c: asyncio.Semaphore(p.concurrency) for c, p in categories.PIPELINES.items()}

    async def route(self, job: work_pb2.DeliveryJob, recipients: Recipients) -> None:
        """Settle one delivery, or, when its channel cannot be used, go on to the next of its chain."""
        facts = suppression.Facts(recipients, self._suppressions, self._dedup, self._caps)
        while isinstance(found := await suppression.verdict(job, facts), suppression.Unusable):
            if not job.fallback:
                await self.announce(job, S.DELIVERY_STATE_SUPPRESSED, found.reason, found.code)
                return
            following = jobs.next_in_chain(job)
            reason = f"{found.reason}; falling back to {following.channel}"
            await self.announce(job, S.DELIVERY_STATE_SUPPRESSED, reason, found.code)
            job = following
        match found:
            case suppression.Settle(state, reason, code):
                await self.announce(job, state, reason, code)
            case suppression.Hold(until, reason):
                await self.announce(job, S.DELIVERY_STATE_SCHEDULED, reason)
                target = subjects.delivery_released(job.category)
                await self._bus.schedule(
                    subjects.held_delivery(job.delivery_id), job.SerializeToString(), until, target
                )
            case None:
                suppression.without_unwanted_wake(job, recipients)
                await self.queue(job)

    async def queue(self, job: work_pb2.DeliveryJob) -> None:
        # PENDING goes first so feedback never sees a delivery's outcome before it exists.
        await self.announce(job, S.DELIVERY_STATE_PENDING, "")
        async with self._publishing[job.category]:
            await delivery_jobs.queue(self._bus, job)

    async def announce(
        self,
        job: work_pb2.DeliveryJob,
        state: common_pb2.DeliveryState.ValueType,
        reason: str,
        code: str = "",
        content: str | None = None,
    ) -> None:
        """Publish the delivery's new state, with its rendered content (unless `content` says otherwise)."""
        content = events.content(job) if content is None else content
        async with self._publishing[job.category]:
            await events.publish(self._bus, events.event(job, state, reason=reason, reason_code=code, content=content))
        metrics.child(DECISIONS, categories.name(job.category), events.state_name(state), code).inc()

    async def renderable(self, chain: list[jobs.Step]) -> list[work_pb2.DeliveryJob]:
        """The steps that rendered; the others are FAILED on the spot."""
        for job, unrenderable in chain:
            if unrenderable:
                await self.announce(job, S.DELIVERY_STATE_FAILED, unrenderable)
        return [job for job, unrenderable in chain if not unrenderable]
