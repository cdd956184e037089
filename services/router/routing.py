"""The router's consumers: turn an accepted message into delivery jobs, now or at send_at, one category at a time.

- herald.message.accepted.<category> (a batch of messages, each on its own), and beside it
  herald.message.accepted.<category>.parts (an audience's or a topic's parts, in a consumer and a routing budget
  of their own, so that one campaign never holds another app's messages behind it):
  due now -> dispatch; send_at ahead ->
  every delivery SCHEDULED and a schedule definition in HERALD_SCHEDULES, which
  the NATS server fires at send_at onto herald.schedule.due.<category> (so a
  scheduled message survives restarts of every process and of the server).
- herald.schedule.due.<category>: dispatch.
- herald.schedule.release.<category>: a delivery held for quiet hours goes out.
- herald.message.fallback.<category>: a delivery failed for good; route the next
  channel of its chain.
- herald.message.cancelled: every delivery CANCELLED.
- herald.schedule.escalated.<category>: an escalation step is due; route it (the adapters drop it if the message
  was read meanwhile).
- herald.schedule.digested.<category>: a digest's window ended; route the digest (digests.py).

A due message to a topic is fanned out instead: its subscribers become parts of it, on the parts subject. One
with a digest template is collected into each recipient's digest rather than routed.

Dispatching first takes the message's decision in the dispatch ledger, so a
cancel that won the race is honoured. Redelivery-safe without a table of its
own: delivery ids are derived from the message, every publish carries a
Nats-Msg-Id, and the dedup and frequency logs recognise a delivery they already
counted, so running the same message twice queues nothing twice.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import structlog
from herald.v1 import common_pb2, events_pb2, message_service_pb2
from prometheus_client import Counter

from libs import categories, events, metrics, subjects, templating
from libs.bus import Bus, Incoming, in_own_trace
from libs.dispatch import ESCALATION_STOPPED, Decision, DispatchLedger
from libs.store import Database
from libs.timeutil import from_timestamp, now
from services.router import digests, jobs, topics
from services.router.dedup import ContentDedup
from services.router.frequency import FrequencyCaps
from services.router.recipients import Recipients, RecipientsReader

log = structlog.get_logger()

# A send_at closer than this is sent now.
SCHEDULE_THRESHOLD = timedelta(seconds=1)
CANCELLED = "cancelled by the sender"
# Recipients of accepted messages of one category routed at once, in publishes allowed at once
# (Pipeline.concurrency).
ROUTED_AT_ONCE = 4
# Subscribers of a topic per part of a Send to it: a part is routed as one message.
FAN_OUT_PAGE = 1000

S = common_pb2
# What routing decided for each delivery: queued (pending), held (scheduled), suppressed by reason code, expired,
# cancelled, failed (unrenderable). Bounded labels: categories, states and a handful of codes.
DECISIONS = Counter(
    "herald_router_decisions_total",
    "Deliveries the router settled, by category, outcome (the state it gave them) and reason code.",
    ("category", "outcome", "reason_code"),
)


def _decided(category: int, state: common_pb2.DeliveryState.ValueType, code: str) -> None:
    metrics.child(DECISIONS, categories.name(category), events.state_name(state), code).inc()


class Router:
    def __init__(
        self, db: Database, bus: Bus, ledger: DispatchLedger, dedup: ContentDedup, caps: FrequencyCaps
    ) -> None:
        self._db = db
        self._recipients = RecipientsReader(db)
        self._bus = bus
        self._digests = digests.Digests(db, bus)
        self._ledger = ledger
        self._dedup = dedup
        self._caps = caps
        # Each category publishes within its own bound, so a flood of one never waits in front of another.
        self._publishing = {c: asyncio.Semaphore(p.concurrency) for c, p in categories.PIPELINES.items()}
        # Each lane its own budget: a campaign's parts (subjects.message_parts) are routed beside other messages,
        # not in front of them.
        self._routing = {
            lane(c): Budget(ROUTED_AT_ONCE * p.concurrency)
            for c, p in categories.PIPELINES.items()
            for lane in (subjects.message_accepted, subjects.message_parts)
        }

    async def on_accepted(self, incoming: Incoming) -> None:
        """A batch of accepted messages: each is routed on its own; the batch is acked once all are, and a
        redelivered batch repeats only what is idempotent (see the module's docstring)."""
        batch = events_pb2.AcceptedBatch.FromString(incoming.data)
        if not batch.messages:
            return
        # A fetch of accepted batches may hold thousands of deliveries: a batch is routed once its recipients fit
        # in its category's budget, so that a process shared by every category never has them all in progress in
        # front of a critical message, while a batch's messages still start together (their directory reads and
        # events are shared). Counting recipients, not messages, routes a topic's or an audience's parts of a
        # thousand one after another, so the first part's jobs reach the adapters while the next is routed.
        recipients = sum(max(1, len(m.recipients)) for m in batch.messages)
        async with self._routing[incoming.subject].taking(recipients):
            await self._bus.turn()
            outcomes = await asyncio.gather(
                *(self._accepted(m, incoming) for m in batch.messages), return_exceptions=True
            )
        if stopped := [e for e in outcomes if isinstance(e, BaseException) and not isinstance(e, Exception)]:
            raise stopped[0]  # cancelled: the batch is redelivered whole
        failed = [(m, e) for m, e in zip(batch.messages, outcomes, strict=True) if isinstance(e, Exception)]
        if len(batch.messages) == 1 and failed:
            raise failed[0][1]
        # One message's failure must not hold up the rest of its batch: the batch is acked, and each message that
        # failed goes back on its own (one at a time, so each is a group of one, named by its id), to be retried
        # alone.
        for message, error in failed:
            log.warning("routing failed; requeued alone", message_id=message.message_id, error=repr(error))
            await self._bus.publish_grouped(
                incoming.subject, (message.SerializeToString(), message.message_id), each_traced=True
            )

    async def _accepted(self, message: events_pb2.AcceptedMessage, incoming: Incoming) -> None:
        """Route one message of a batch, in its own call's trace (a batch may group several calls')."""
        with in_own_trace(incoming, message.traceparent):
            send_at = from_timestamp(message.send_at)
            if send_at is not None and send_at > now() + SCHEDULE_THRESHOLD:
                await self._hold(message, send_at)
            else:
                await self._dispatch(message)

    async def on_due(self, incoming: Incoming) -> None:
        await self._dispatch(events_pb2.AcceptedMessage.FromString(incoming.data))

    async def on_cancelled(self, incoming: Incoming) -> None:
        await self._cancelled(events_pb2.AcceptedMessage.FromString(incoming.data))

    async def _cancelled(self, message: events_pb2.AcceptedMessage) -> None:
        await self._each(self._announce(j, S.DELIVERY_STATE_CANCELLED, CANCELLED) for j in await self._firsts(message))

    async def on_released(self, incoming: Incoming) -> None:
        """A delivery held for quiet hours: its window ended, send it now."""
        await self._queue(events_pb2.DeliveryJob.FromString(incoming.data))

    async def on_fallback(self, incoming: Incoming) -> None:
        """A delivery failed for good in the adapters: route the next channel of its chain."""
        job = jobs.next_in_chain(events_pb2.DeliveryJob.FromString(incoming.data))
        await self._route(job, await self._recipients.load({job.user_id} - {""}))

    async def _hold(self, message: events_pb2.AcceptedMessage, send_at: datetime) -> None:
        """Schedule a message for its send_at, unless it was cancelled while it waited here: with no schedule to
        withdraw, the cancel left only its decision."""
        if await self._ledger.decided(message.message_id) is Decision.CANCELLED:
            await self._cancelled(message)
            return
        reason = f"scheduled for {send_at.isoformat(timespec='seconds')}"
        await self._each(self._announce(j, S.DELIVERY_STATE_SCHEDULED, reason) for j in await self._firsts(message))
        target = subjects.schedule_due(message.template.category)
        payload = message.SerializeToString()
        await self._bus.schedule(subjects.schedule(message.message_id, message.part), payload, send_at, target)

    async def _dispatch(self, message: events_pb2.AcceptedMessage) -> None:
        recipients = await self._recipients.load(_user_ids(message))
        plan = jobs.plan(message, recipients.users)
        if await self._ledger.decide(message.message_id, Decision.DISPATCHED) is Decision.CANCELLED:
            firsts = [c.steps[0][0] for c in plan.chains]
            await self._each(self._announce(job, S.DELIVERY_STATE_CANCELLED, CANCELLED) for job in firsts)
            return
        if message.topic:
            await self._fan_out(message)
            return
        if templating.collects_digest(message.template):
            await self._each(self._collect(message, chain) for chain in plan.chains)
            return
        await self._each(self._start(chain.steps, recipients) for chain in plan.chains)
        sent_at = from_timestamp(message.send_at) or from_timestamp(message.create_time) or now()
        await self._each(self._escalate(e, sent_at + e.delay) for e in plan.escalations)

    async def _fan_out(self, message: events_pb2.AcceptedMessage) -> None:
        """A Send to a topic: its subscribers, a page at a time in user-id order, become parts of the message, as
        a large audience's are, each routed like any message. A redelivery publishes the same parts under the same
        Nats-Msg-Ids, which JetStream drops."""
        after, part = "", 0
        while users := await topics.subscribers(self._db, message.app_id, message.topic, after, FAN_OUT_PAGE):
            piece = events_pb2.AcceptedMessage()
            piece.CopyFrom(message)
            piece.topic, piece.part, piece.recipient_offset = "", part + 1, part * FAN_OUT_PAGE
            piece.recipients.extend(message_service_pb2.Recipient(user_id=u) for u in users)
            batch = events_pb2.AcceptedBatch(messages=[piece])
            subject = subjects.message_parts(message.template.category)
            await self._bus.publish(subject, batch.SerializeToString(), f"{message.message_id}.{piece.part}")
            after, part = users[-1], part + 1

    async def _start(self, chain: list[jobs.Step], recipients: Recipients) -> None:
        """Route a chain from its first renderable step; a step that cannot be rendered FAILED on the spot."""
        if renderable := await self._renderable(chain):
            await self._route(jobs.link(renderable), recipients)

    async def _renderable(self, chain: list[jobs.Step]) -> list[events_pb2.DeliveryJob]:
        """The steps that rendered; the others are FAILED on the spot."""
        for job, unrenderable in chain:
            if unrenderable:
                await self._announce(job, S.DELIVERY_STATE_FAILED, unrenderable)
        return [job for job, unrenderable in chain if not unrenderable]

    async def _escalate(self, escalation: jobs.Escalation, due: datetime) -> None:
        """Hold a later step of the escalation until it is due; it is routed then, and the adapters send it only
        if none of the deliveries before it was read or delivered."""
        if not await self._renderable([escalation.step]):
            return
        job = escalation.step[0]
        reason = f"escalation: goes out at {due.isoformat(timespec='seconds')} unless the message is read by then"
        await self._announce(job, S.DELIVERY_STATE_SCHEDULED, reason)
        target = subjects.escalation_due(job.category)
        await self._bus.schedule(subjects.escalation(job.delivery_id), job.SerializeToString(), due, target)

    async def on_escalated(self, incoming: Incoming) -> None:
        """An escalation step is due: route it like any delivery, unless the sender cancelled the message since."""
        job = events_pb2.DeliveryJob.FromString(incoming.data)
        if await self._ledger.escalation_stopped(job.message_id):
            await self._announce(job, S.DELIVERY_STATE_CANCELLED, ESCALATION_STOPPED)
            return
        await self._route(job, await self._recipients.load({job.user_id} - {""}))

    async def _collect(self, message: events_pb2.AcceptedMessage, chain: jobs.Chain) -> None:
        """Collect a recipient's delivery into its digest instead of routing it now."""
        if not (renderable := await self._renderable(chain.steps)):
            return
        job = jobs.link(renderable)
        carrier, due = await self._digests.add(message, job, chain.values)
        at = due.isoformat(timespec="seconds")
        if carrier == job.delivery_id:  # its content is the digest's, known at the window's end
            reason = f"digest: collecting until {at}, then sent as this delivery"
            await self._announce(job, S.DELIVERY_STATE_SCHEDULED, reason, content="")
        else:
            reason = f"digest: collected into the digest delivery {carrier}, sent at {at}"
            await self._announce(job, S.DELIVERY_STATE_SCHEDULED, reason)

    async def on_digest(self, incoming: Incoming) -> None:
        """A digest's window ended: it goes out as its first item's delivery, rendered over every item; every
        other item's delivery is DIGESTED, naming it. Its items are dropped only then: a redelivery publishes the
        same again."""
        collection = events_pb2.DigestCollection.FromString(incoming.data)
        if items := await self._digests.close(collection):
            step, carried = digests.ready(collection, items)
            job = step[0]
            reason = f"carried by the digest delivery {job.delivery_id} ({len(items)} items)"
            await self._each(self._announce(item, S.DELIVERY_STATE_DIGESTED, reason) for item in carried)
            if renderable := await self._renderable([step]):
                await self._route(renderable[0], await self._recipients.load({job.user_id} - {""}))
        await self._digests.forget(collection)

    async def _route(self, job: events_pb2.DeliveryJob, recipients: Recipients) -> None:
        """Settle one delivery, or, when its channel cannot be used, go on to the next of its chain."""
        while unusable := await self._route_one(job, recipients):
            code, reason = unusable
            if not job.fallback:
                await self._announce(job, S.DELIVERY_STATE_SUPPRESSED, reason, code)
                return
            following = jobs.next_in_chain(job)
            reason = f"{reason}; falling back to {following.channel}"
            await self._announce(job, S.DELIVERY_STATE_SUPPRESSED, reason, code)
            job = following

    async def _route_one(self, job: events_pb2.DeliveryJob, recipients: Recipients) -> tuple[str, str] | None:
        """Queue, hold or settle the delivery and return None; or say why its channel cannot be used, as
        (reason code, reason)."""
        expire_at = from_timestamp(job.expire_at)
        if expire_at is not None and expire_at <= now():
            await self._announce(job, S.DELIVERY_STATE_EXPIRED, "expire_at passed before routing")
        elif opted_out := recipients.opted_out(job):
            return "opted_out", opted_out
        elif no_address := recipients.no_address(job):
            return "no_address", no_address
        elif not await self._dedup.first(job):
            reason = f"duplicate: the same content went to this recipient on {job.channel}"
            reason = f"{reason} within the last {self._dedup.window:g}s"
            await self._announce(job, S.DELIVERY_STATE_SUPPRESSED, reason, "duplicate")
        elif capped := await self._caps.admit(job):
            await self._announce(job, S.DELIVERY_STATE_SUPPRESSED, capped, "frequency_cap")
        elif quiet_until := recipients.quiet_until(job):
            until = quiet_until.strftime("%H:%M %Z")
            if expire_at and expire_at <= quiet_until:
                await self._announce(job, S.DELIVERY_STATE_EXPIRED, f"quiet hours until {until} end after expire_at")
            else:
                await self._announce(job, S.DELIVERY_STATE_SCHEDULED, f"quiet hours: held until {until}")
                target = subjects.delivery_released(job.category)
                await self._bus.schedule(
                    subjects.held_delivery(job.delivery_id), job.SerializeToString(), quiet_until, target
                )
        else:
            if job.HasField("wake") and (recipients.opted_out(job.wake) or recipients.quiet_until(job.wake)):
                job.ClearField("wake")  # no waking a user who opted out of push or is in their quiet hours
            await self._queue(job)
        return None

    async def _queue(self, job: events_pb2.DeliveryJob) -> None:
        # PENDING goes first so feedback never sees a delivery's outcome before it exists.
        await self._announce(job, S.DELIVERY_STATE_PENDING, "")
        async with self._publishing[job.category]:
            await self._bus.publish(
                subjects.delivery_job(job.category, job.channel), job.SerializeToString(), job.delivery_id
            )

    async def _announce(
        self,
        job: events_pb2.DeliveryJob,
        state: common_pb2.DeliveryState.ValueType,
        reason: str,
        code: str = "",
        content: str | None = None,
    ) -> None:
        """Publish the delivery's new state, with its rendered content (unless `content` says otherwise)."""
        content = events.content(job) if content is None else content
        async with self._publishing[job.category]:
            await events.publish(self._bus, events.event(job, state, reason=reason, reason_code=code, content=content))
        _decided(job.category, state, code)

    async def _firsts(self, message: events_pb2.AcceptedMessage) -> list[events_pb2.DeliveryJob]:
        """The first delivery of each chain: all that exists of a message before it is dispatched."""
        recipients = await self._recipients.load(_user_ids(message))
        return [chain.steps[0][0] for chain in jobs.plan(message, recipients.users).chains]

    @staticmethod
    async def _each(steps: Iterable[Awaitable[None]]) -> None:
        await asyncio.gather(*steps)


class Budget:
    """At most `size` units taken at once; a taker waits until all it asks for is free (one asking for more than
    `size` takes all of it)."""

    def __init__(self, size: int) -> None:
        self._size = self._free = size
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def taking(self, units: int) -> AsyncIterator[None]:
        units = min(units, self._size)
        async with self._changed:
            await self._changed.wait_for(lambda: self._free >= units)
            self._free -= units
        try:
            yield
        finally:
            async with self._changed:
                self._free += units
                self._changed.notify_all()


def _user_ids(message: events_pb2.AcceptedMessage) -> set[str]:
    return {r.user_id for r in message.recipients if r.user_id}
