"""Settling a delivery: the suppression rules' verdict carried out - queued for its channel's adapter, held for
quiet hours, settled, or handed to the next channel of its chain - and every state it takes announced."""

import asyncio
import itertools
import operator
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from herald.v1 import common_pb2, events_pb2
from opentelemetry import trace
from prometheus_client import Counter

from herald.internal.v1 import work_pb2
from herald.libs import categories, delivery_jobs, events, metrics, subjects
from herald.libs.bus import Publisher, Schedules, current, in_span
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


T = TypeVar("T")
# A delivery to settle, with the span it is routed in (its message's): what it publishes continues that trace.
Traced = tuple[work_pb2.DeliveryJob, trace.Span]


@dataclass
class Publishes:
    """What settling a batch of deliveries publishes: the states announced (each durable before any job is
    queued: feedback never sees a delivery's outcome before it exists), the deliveries held in a schedule, and the
    jobs for the adapters."""

    announced: list[tuple[events_pb2.DeliveryEvent, trace.Span]] = field(default_factory=list)
    held: list[tuple[work_pb2.DeliveryJob, trace.Span, datetime]] = field(default_factory=list)
    queued: list[Traced] = field(default_factory=list)


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

    async def route(self, deliveries: Sequence[Traced], recipients: Recipients) -> None:
        """Settle deliveries of one category - a fetched batch's at once - each, when its channel cannot be used,
        going on to the next of its chain. The rules are asked one delivery after another: with no dedup window or
        frequency rule (most deliveries) nothing they ask waits, and a task per delivery would cost more than the
        rules; the batch's publishes are then awaited together."""
        if not deliveries:
            return
        listed = await self._suppressions.lookup(j for job, _ in deliveries for j in (job, *job.fallback))
        facts = suppression.Facts(recipients, listed, self._dedup, self._caps)
        settled = Publishes()
        for span, alike in _by_span(deliveries):
            with current(span):
                for job, _ in alike:
                    await self._settle(job, span, facts, settled)
        await self._publish(deliveries[0][0].category, settled)

    async def queue(self, job: work_pb2.DeliveryJob) -> None:
        """Queue a delivery the rules already let through (one held for quiet hours, now released)."""
        settled = Publishes()
        settled.announced.append((state_event(job, S.DELIVERY_STATE_PENDING, ""), trace.get_current_span()))
        settled.queued.append((job, trace.get_current_span()))
        await self._publish(job.category, settled)

    async def _settle(
        self, job: work_pb2.DeliveryJob, span: trace.Span, facts: suppression.Facts, to: Publishes
    ) -> None:
        while isinstance(found := await suppression.verdict(job, facts), suppression.Unusable):
            if not job.fallback:
                to.announced.append((state_event(job, S.DELIVERY_STATE_SUPPRESSED, found.reason, found.code), span))
                return
            following = jobs.next_in_chain(job)
            reason = f"{found.reason}; falling back to {following.channel}"
            to.announced.append((state_event(job, S.DELIVERY_STATE_SUPPRESSED, reason, found.code), span))
            job = following
        match found:
            case suppression.Settle(state, reason, code):
                to.announced.append((state_event(job, state, reason, code), span))
            case suppression.Hold(until, reason):
                to.announced.append((state_event(job, S.DELIVERY_STATE_SCHEDULED, reason), span))
                to.held.append((job, span, until))
            case None:
                suppression.without_unwanted_wake(job, facts.recipients)
                to.announced.append((state_event(job, S.DELIVERY_STATE_PENDING, ""), span))
                to.queued.append((job, span))

    async def _publish(self, category: common_pb2.Category.ValueType, settled: Publishes) -> None:
        async with self._publishing[category]:
            announced = []
            for span, run in _by_span(settled.announced):
                with current(span):
                    announced.append(events.publish(self._bus, *(event for event, _ in run)))
            await asyncio.gather(*announced)
            await asyncio.gather(*(in_span(span, self._hold(job, until)) for job, span, until in settled.held))
            queued = []
            for span, alike in _by_span(settled.queued):
                with current(span):
                    queued.append(delivery_jobs.queue(self._bus, *(job for job, _ in alike)))
            await asyncio.gather(*queued)

    async def _hold(self, job: work_pb2.DeliveryJob, until: datetime) -> None:
        target = subjects.delivery_released(job.category)
        await self._bus.schedule(subjects.held_delivery(job.delivery_id), job.SerializeToString(), until, target)

    def announce(self, *decided: events_pb2.DeliveryEvent) -> Awaitable[None]:
        """Publish deliveries' new states (`state_event`s): they join their groups now, and are durable once the result
        is."""
        return events.publish(self._bus, *decided)

    async def renderable(self, chain: list[jobs.Step]) -> list[work_pb2.DeliveryJob]:
        """The steps that rendered; the others are FAILED on the spot."""
        for job, unrenderable in chain:
            if unrenderable:
                await self.announce(state_event(job, S.DELIVERY_STATE_FAILED, unrenderable))
        return [job for job, unrenderable in chain if not unrenderable]


def state_event(
    job: work_pb2.DeliveryJob,
    state: common_pb2.DeliveryState.ValueType,
    reason: str,
    code: str = "",
    content: str | None = None,
) -> events_pb2.DeliveryEvent:
    """The delivery's new state as its event, with its rendered content (unless `content` says otherwise), counted:
    for Settler.announce, or for a batch's settling to announce together."""
    content = events.content(job) if content is None else content
    metrics.child(DECISIONS, categories.name(job.category), events.state_name(state), code).inc()
    return events.event(job, state, reason=reason, reason_code=code, content=content)


def _by_span(deliveries: Iterable[tuple[T, trace.Span]]) -> Iterator[tuple[trace.Span, Iterator[tuple[T, trace.Span]]]]:
    """Runs of deliveries (or their events) routed in the same span (a SendBatch call's are all in one), so that
    each run makes its span current once."""
    return itertools.groupby(deliveries, key=operator.itemgetter(1))
