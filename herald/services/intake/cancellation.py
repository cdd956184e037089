"""CancelMessage's decision: withdraw a message the router has not dispatched yet, or, once it has, the escalation
steps still waiting. The dispatch ledger decides which came first, the cancel or the dispatch."""

from typing import Protocol

from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as pb
from sqlalchemy import update

from herald.internal.v1 import work_pb2
from herald.libs import events, subjects
from herald.libs.bus import Publisher, Schedules
from herald.libs.dispatch import ESCALATION_STOPPED, Decision, DispatchLedger
from herald.libs.errors import FailedPrecondition, NotFound
from herald.libs.store import Database
from herald.libs.timeutil import now
from herald.services.intake import tables
from herald.services.intake.accepted_queue import AcceptedQueue, as_row
from herald.services.intake.message_ids import MessageIds


class CancellingBus(Publisher, Schedules, Protocol):
    """What a cancel asks of the bus: the message's schedules, and publishing the cancel."""


class Cancellation:
    def __init__(
        self, db: Database, bus: CancellingBus, ledger: DispatchLedger, ids: MessageIds, queue: AcceptedQueue
    ) -> None:
        self._db = db
        self._bus = bus
        self._ledger = ledger
        self._ids = ids
        self._queue = queue

    async def cancel(self, app_id: str, message_id: str) -> pb.CancelMessageResponse:
        """Only a message with an idempotency key or an audience has a row; any other is the app's if its id says
        so (MessageIds). A scheduled message's schedule is withdrawn, and its deliveries are CANCELLED at once; one
        still waiting in the router's queue becomes CANCELLED when the router reaches it and finds the decision."""
        async with self._db.session() as session:
            stored = await session.get(tables.Message, message_id)
        mine = stored.app_id == app_id if stored is not None else self._ids.issued_to(message_id, app_id)
        if not mine:
            raise NotFound(f"message '{message_id[:64]}' not found")
        if await self._ledger.decide(message_id, Decision.CANCELLED) is not Decision.CANCELLED:
            if stopped := await self._stop_escalation(message_id):
                return pb.CancelMessageResponse(
                    message_id=message_id, already_dispatched=True, cancelled_delivery_ids=stopped
                )
            raise FailedPrecondition(
                f"message {message_id} was already dispatched to its channels and has no escalation step waiting; "
                "it can no longer be cancelled"
            )
        if stored is None:
            scheduled = await self._bus.scheduled(subjects.schedule(message_id, 0))
            payloads = [(0, scheduled.payload)] if scheduled is not None else []
        else:
            if stored.cancel_time is None:
                async with self._db.session.begin() as session:
                    await session.execute(
                        update(tables.Message).where(tables.Message.message_id == message_id).values(cancel_time=now())
                    )
            payloads = [(part, payload) async for part, payload in self._queue.payloads(as_row(stored))]
        await self._bus.unschedule(subjects.schedules(message_id))
        for part, payload in payloads:
            await self._bus.publish(subjects.MESSAGE_CANCELLED, payload, msg_id=f"{message_id}.{part}.cancel")
        return pb.CancelMessageResponse(message_id=message_id)

    async def _stop_escalation(self, message_id: str) -> list[str]:
        """CANCELLED for the dispatched message's escalation steps still waiting; their delivery ids. The mark
        comes first, so a step that fires while its schedule is withdrawn is cancelled by the router instead."""
        await self._ledger.stop_escalation(message_id)
        stopped = []
        for subject, waiting in (await self._bus.scheduled_under(subjects.escalations(message_id))).items():
            step = work_pb2.DeliveryJob.FromString(waiting.payload)
            await self._bus.unschedule(subject)
            await events.publish(
                self._bus, events.event(step, common_pb2.DELIVERY_STATE_CANCELLED, reason=ESCALATION_STOPPED)
            )
            stopped.append(step.delivery_id)
        return sorted(stopped)
