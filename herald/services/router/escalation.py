"""Escalation (Template.escalation): a later step is held until it is due, then routed like any delivery; the
adapters send it only if none of the deliveries before it was read or delivered."""

from datetime import datetime

from herald.v1 import common_pb2
from opentelemetry import trace

from herald.internal.v1 import work_pb2
from herald.libs import subjects
from herald.libs.dispatch import ESCALATION_STOPPED, DispatchLedger
from herald.services.router import jobs
from herald.services.router.recipients import RecipientsReader
from herald.services.router.settling import RoutingBus, Settler, state_event

S = common_pb2


class Escalations:
    def __init__(self, bus: RoutingBus, ledger: DispatchLedger, recipients: RecipientsReader, settler: Settler) -> None:
        self._bus = bus
        self._ledger = ledger
        self._recipients = recipients
        self._settler = settler

    async def hold(self, escalation: jobs.Escalation, due: datetime) -> None:
        """SCHEDULED until `due`, in a NATS schedule, so it survives restarts."""
        if not await self._settler.renderable([escalation.step]):
            return
        job = escalation.step[0]
        reason = f"escalation: goes out at {due.isoformat(timespec='seconds')} unless the message is read by then"
        await self._settler.announce(state_event(job, S.DELIVERY_STATE_SCHEDULED, reason))
        target = subjects.escalation_due(job.category)
        await self._bus.schedule(subjects.escalation(job.delivery_id), job.SerializeToString(), due, target)

    async def due(self, job: work_pb2.DeliveryJob) -> None:
        """Route a step that is due, unless the sender cancelled the message since."""
        if await self._ledger.escalation_stopped(job.message_id):
            await self._settler.announce(state_event(job, S.DELIVERY_STATE_CANCELLED, ESCALATION_STOPPED))
            return
        recipients = await self._recipients.load({job.user_id} - {""})
        await self._settler.route([(job, trace.get_current_span())], recipients)
