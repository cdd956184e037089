"""A message's way out of the router: held until its send_at, cancelled, or dispatched - fanned out to a topic's
subscribers, collected into digests, or each recipient's chain routed and its escalation steps held.

Dispatching first takes the message's decision in the dispatch ledger, so a cancel that won the race is honoured.
"""

from datetime import datetime, timedelta

from herald.v1 import common_pb2

from herald.internal.v1 import work_pb2
from herald.libs import subjects, templating
from herald.libs.dispatch import Decision, DispatchLedger
from herald.libs.store import Database
from herald.libs.timeutil import from_timestamp, now
from herald.libs.together import together
from herald.services.router import jobs
from herald.services.router.digest_routing import DigestRouting
from herald.services.router.escalation import Escalations
from herald.services.router.fan_out import fan_out
from herald.services.router.recipients import Recipients, RecipientsReader
from herald.services.router.settling import RoutingBus, Settler

# A send_at closer than this is sent now.
SCHEDULE_THRESHOLD = timedelta(seconds=1)
CANCELLED = "cancelled by the sender"
S = common_pb2


class Dispatcher:
    def __init__(
        self,
        db: Database,
        bus: RoutingBus,
        ledger: DispatchLedger,
        recipients: RecipientsReader,
        settler: Settler,
        escalations: Escalations,
        digests: DigestRouting,
    ) -> None:
        self._db = db
        self._bus = bus
        self._ledger = ledger
        self._recipients = recipients
        self._settler = settler
        self._escalations = escalations
        self._digests = digests

    async def accepted(self, message: work_pb2.AcceptedMessage) -> None:
        """Dispatch a message now, or hold it for its send_at."""
        send_at = from_timestamp(message.send_at)
        if send_at is not None and send_at > now() + SCHEDULE_THRESHOLD:
            await self._hold(message, send_at)
        else:
            await self.dispatch(message)

    async def cancelled(self, message: work_pb2.AcceptedMessage) -> None:
        await together(
            self._settler.announce(j, S.DELIVERY_STATE_CANCELLED, CANCELLED) for j in await self._firsts(message)
        )

    async def _hold(self, message: work_pb2.AcceptedMessage, send_at: datetime) -> None:
        """Schedule a message for its send_at, unless it was cancelled while it waited here: with no schedule to
        withdraw, the cancel left only its decision."""
        if await self._ledger.decided(message.message_id) is Decision.CANCELLED:
            await self.cancelled(message)
            return
        reason = f"scheduled for {send_at.isoformat(timespec='seconds')}"
        await together(
            self._settler.announce(j, S.DELIVERY_STATE_SCHEDULED, reason) for j in await self._firsts(message)
        )
        target = subjects.schedule_due(message.template.category)
        payload = message.SerializeToString()
        await self._bus.schedule(subjects.schedule(message.message_id, message.part), payload, send_at, target)

    async def dispatch(self, message: work_pb2.AcceptedMessage) -> None:
        recipients = await self._recipients.load(_user_ids(message))
        plan = jobs.plan(message, recipients.users)
        if await self._ledger.decide(message.message_id, Decision.DISPATCHED) is Decision.CANCELLED:
            firsts = [c.steps[0][0] for c in plan.chains]
            await together(self._settler.announce(job, S.DELIVERY_STATE_CANCELLED, CANCELLED) for job in firsts)
            return
        if message.topic:
            await fan_out(self._db, self._bus, message)
            return
        if templating.collects_digest(message.template):
            await together(self._digests.collect(message, chain) for chain in plan.chains)
            return
        await together(self._start(chain.steps, recipients) for chain in plan.chains)
        sent_at = from_timestamp(message.send_at) or from_timestamp(message.create_time) or now()
        await together(self._escalations.hold(e, sent_at + e.delay) for e in plan.escalations)

    async def _start(self, chain: list[jobs.Step], recipients: Recipients) -> None:
        """Route a chain from its first renderable step; a step that cannot be rendered FAILED on the spot."""
        if renderable := await self._settler.renderable(chain):
            await self._settler.route(jobs.link(renderable), recipients)

    async def _firsts(self, message: work_pb2.AcceptedMessage) -> list[work_pb2.DeliveryJob]:
        """The first delivery of each chain: all that exists of a message before it is dispatched."""
        recipients = await self._recipients.load(_user_ids(message))
        return [chain.steps[0][0] for chain in jobs.plan(message, recipients.users).chains]


def _user_ids(message: work_pb2.AcceptedMessage) -> set[str]:
    return {r.user_id for r in message.recipients if r.user_id}
