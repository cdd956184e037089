"""The router's consumers: which subject each reads, and the step of routing (dispatching.py, settling.py,
escalation.py, digest_routing.py) each message goes to, one category at a time.

- herald.message.accepted.<category> (a batch of messages, each on its own), and beside it
  herald.message.accepted.<category>.parts (an audience's or a topic's parts, in a consumer and a routing budget
  of their own, so that one campaign never holds another app's messages behind it): due now -> dispatch; send_at
  ahead -> every delivery SCHEDULED and a schedule definition in HERALD_SCHEDULES, which the NATS server fires at
  send_at onto herald.schedule.due.<category> (so a scheduled message survives restarts of every process and of
  the server).
- herald.schedule.due.<category>: dispatch.
- herald.schedule.release.<category>: a delivery held for quiet hours goes out.
- herald.message.fallback.<category>: a delivery failed for good; route the next channel of its chain.
- herald.message.cancelled: every delivery CANCELLED.
- herald.schedule.escalated.<category>: an escalation step is due; route it (the adapters drop it if the message
  was read meanwhile).
- herald.schedule.digested.<category>: a digest's window ended; route the digest.

Redelivery-safe without a table of its own: delivery ids are derived from the message, every publish carries a
Nats-Msg-Id, and the dedup and frequency logs recognise a delivery they already counted, so running the same
message twice queues nothing twice.
"""

from collections.abc import Awaitable, Callable

import structlog

from herald.internal.v1 import work_pb2
from herald.libs import categories, subjects
from herald.libs.budget import Budget
from herald.libs.bus import Incoming, record_span
from herald.libs.dispatch import DispatchLedger
from herald.libs.store import Database
from herald.services.router import digests, jobs, suppression
from herald.services.router.digest_routing import DigestRouting
from herald.services.router.dispatching import Dispatcher
from herald.services.router.escalation import Escalations
from herald.services.router.recipients import RecipientsReader
from herald.services.router.settling import RoutingBus, Settler

log = structlog.get_logger()

# Recipients of accepted messages of one category routed at once, in publishes allowed at once
# (Pipeline.concurrency).
ROUTED_AT_ONCE = 4
Handler = Callable[[Incoming], Awaitable[None]]


class Router:
    def __init__(
        self,
        db: Database,
        bus: RoutingBus,
        ledger: DispatchLedger,
        suppressions: suppression.Suppressions,
        dedup: suppression.Dedup,
        caps: suppression.Caps,
    ) -> None:
        self._bus = bus
        self._recipients = RecipientsReader(db)
        self._settler = Settler(bus, suppressions, dedup, caps)
        self._escalations = Escalations(bus, ledger, self._recipients, self._settler)
        self._digests = DigestRouting(digests.Digests(db, bus), self._recipients, self._settler)
        self._dispatcher = Dispatcher(
            db, bus, ledger, self._recipients, self._settler, self._escalations, self._digests
        )
        # Each lane its own budget: a campaign's parts (subjects.message_parts) are routed beside other messages,
        # not in front of them.
        self._routing = {
            lane(c): Budget(ROUTED_AT_ONCE * p.concurrency)
            for c, p in categories.PIPELINES.items()
            for lane in (subjects.message_accepted, subjects.message_parts)
        }

    def subscriptions(self, category: int) -> list[tuple[str, str, str, Handler]]:
        """A category's consumers: (stream, durable name, subject, handler)."""
        name = categories.name(category)
        messages, schedules = subjects.MESSAGES_STREAM, subjects.SCHEDULES_STREAM
        return [
            (messages, f"router-{name}", subjects.message_accepted(category), self.on_accepted),
            (messages, f"router-{name}-parts", subjects.message_parts(category), self.on_accepted),
            (messages, f"router-fallback-{name}", subjects.fallback(category), self.on_fallback),
            (schedules, f"router-due-{name}", subjects.schedule_due(category), self.on_due),
            (schedules, f"router-release-{name}", subjects.delivery_released(category), self.on_released),
            (schedules, f"router-escalation-{name}", subjects.escalation_due(category), self.on_escalated),
            (schedules, f"router-digest-{name}", subjects.digest_due(category), self.on_digest),
        ]

    async def on_accepted(self, incoming: Incoming) -> None:
        """A batch of accepted messages, routed together (Dispatcher.dispatch), each in its own call's trace; the
        batch is acked once all are, and a redelivered batch repeats only what is idempotent (see the module's
        docstring)."""
        batch = work_pb2.AcceptedBatch.FromString(incoming.data)
        if not batch.messages:
            return
        # A fetch of accepted batches may hold thousands of deliveries: a batch is routed once its recipients fit
        # in its category's budget, so that a process shared by every category never has them all in progress in
        # front of a critical message, while a batch's messages still start together (their directory reads and
        # events are shared). Counting recipients, not messages, routes a topic's or an audience's parts of a
        # thousand one after another, so the first part's jobs reach the adapters while the next is routed.
        recipients = sum(max(1, len(m.recipients)) for m in batch.messages)
        spans = [record_span(incoming, m.traceparent) for m in batch.messages]
        try:
            async with self._routing[incoming.subject].taking(recipients):
                await self._bus.turn()
                outcomes = await self._dispatcher.dispatch(list(zip(batch.messages, spans, strict=True)))
        finally:
            for span in spans:
                if span is not incoming.span:
                    span.end()
        failed = [(m, e) for m, e in zip(batch.messages, outcomes, strict=True) if e is not None]
        if failed and len(failed) == len(batch.messages):
            # All of it (an outage, most likely): the batch is retried whole, after the bus's delay.
            raise failed[0][1]
        # One message's failure must not hold up the rest of its batch: the batch is acked, and each message that
        # failed goes back on its own (one at a time, so each is a group of one), to be retried alone. Its id names
        # the message, its part (two parts of one audience are two messages) and this batch's place in the stream:
        # a redelivery of this batch requeues nothing twice, while a message requeued again from a later batch is
        # not taken for a duplicate and dropped.
        for message, error in failed:
            log.warning("routing failed; requeued alone", message_id=message.message_id, error=repr(error))
            record_id = f"{message.message_id}.{message.part}.{incoming.sequence}"
            await self._bus.publish_grouped(
                incoming.subject, (message.SerializeToString(), record_id), each_traced=True
            )

    async def on_due(self, incoming: Incoming) -> None:
        message = work_pb2.AcceptedMessage.FromString(incoming.data)
        if (failed := (await self._dispatcher.dispatch([(message, incoming.span)]))[0]) is not None:
            raise failed

    async def on_cancelled(self, incoming: Incoming) -> None:
        await self._dispatcher.cancelled(work_pb2.AcceptedMessage.FromString(incoming.data))

    async def on_released(self, incoming: Incoming) -> None:
        """A delivery held for quiet hours: its window ended, send it now."""
        await self._settler.queue(work_pb2.DeliveryJob.FromString(incoming.data))

    async def on_fallback(self, incoming: Incoming) -> None:
        """A delivery failed for good in the adapters: route the next channel of its chain."""
        job = jobs.next_in_chain(work_pb2.DeliveryJob.FromString(incoming.data))
        recipients = await self._recipients.load({job.user_id} - {""})
        await self._settler.route([(job, incoming.span)], recipients)

    async def on_escalated(self, incoming: Incoming) -> None:
        await self._escalations.due(work_pb2.DeliveryJob.FromString(incoming.data))

    async def on_digest(self, incoming: Incoming) -> None:
        await self._digests.close(work_pb2.DigestCollection.FromString(incoming.data))
