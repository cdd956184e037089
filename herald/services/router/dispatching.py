"""A message's way out of the router: held until its send_at, cancelled, or dispatched - fanned out to a topic's
subscribers, collected into digests, or each recipient's chain routed and its escalation steps held.

Dispatching first takes the message's decision in the dispatch ledger, so a cancel that won the race is honoured.
"""

import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from herald.v1 import common_pb2
from opentelemetry import trace

from herald.internal.v1 import work_pb2
from herald.libs import subjects, templating
from herald.libs.bus import current, in_span
from herald.libs.dispatch import Decision, DispatchLedger
from herald.libs.store import Database
from herald.libs.timeutil import from_timestamp, now
from herald.libs.together import together
from herald.services.router import jobs
from herald.services.router.digest_routing import DigestRouting
from herald.services.router.escalation import Escalations
from herald.services.router.fan_out import fan_out
from herald.services.router.recipients import RecipientsReader
from herald.services.router.settling import RoutingBus, Settler, Traced, state_event

# A send_at closer than this is sent now.
SCHEDULE_THRESHOLD = timedelta(seconds=1)
CANCELLED = "cancelled by the sender"
S = common_pb2
# A message to route, with the span it is routed in (its Send's trace).
TracedMessage = tuple[work_pb2.AcceptedMessage, trace.Span]


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

    async def cancelled(self, message: work_pb2.AcceptedMessage) -> None:
        firsts = await self._firsts(message)
        await self._settler.announce(*(state_event(j, S.DELIVERY_STATE_CANCELLED, CANCELLED) for j in firsts))

    async def _hold(self, message: work_pb2.AcceptedMessage, send_at: datetime) -> None:
        """Schedule a message for its send_at, unless it was cancelled while it waited here: with no schedule to
        withdraw, the cancel left only its decision."""
        if await self._ledger.decided(message.message_id) is Decision.CANCELLED:
            await self.cancelled(message)
            return
        reason = f"scheduled for {send_at.isoformat(timespec='seconds')}"
        firsts = await self._firsts(message)
        await self._settler.announce(*(state_event(j, S.DELIVERY_STATE_SCHEDULED, reason) for j in firsts))
        target = subjects.schedule_due(message.template.category)
        payload = message.SerializeToString()
        await self._bus.schedule(subjects.schedule(message.message_id, message.part), payload, send_at, target)

    async def dispatch(self, messages: Sequence[TracedMessage]) -> list[Exception | None]:
        """Dispatch messages - a fetched batch's together: their recipients read at once, their decisions taken at
        once, their deliveries settled as one batch (Settler.route), in a few turns of the event loop rather than a
        handful per message; a message whose send_at is ahead is held for it instead. What each message failed
        with on its own (its plan, its decision), or None; a failure of the batch's steps raises."""
        failed: list[Exception | None] = [None] * len(messages)
        held: list[tuple[work_pb2.AcceptedMessage, trace.Span, datetime]] = []
        due: list[int] = []
        later_than = now() + SCHEDULE_THRESHOLD
        for i, (message, span) in enumerate(messages):
            try:
                send_at = from_timestamp(message.send_at)
            except Exception as e:  # a bug a message brings out must not hold up the rest of its batch
                failed[i] = e
                continue
            if send_at is not None and send_at > later_than:
                held.append((message, span, send_at))
            else:
                due.append(i)
        recipients = await self._recipients.load(set().union(*(_user_ids(messages[i][0]) for i in due)))
        plans: dict[int, jobs.Plan] = {}
        for i in due:
            try:
                plans[i] = jobs.plan(messages[i][0], recipients.users)
            except Exception as e:  # as above
                failed[i] = e
        decisions = await self._ledger.decide_all([messages[i][0].message_id for i in plans], Decision.DISPATCHED)
        deliveries: list[Traced] = []
        announced: list[Awaitable[None]] = []
        # The rarer steps, each in its message's span, started once the loop is done (an error on the way leaves
        # none of them made and never awaited).
        later: list[tuple[trace.Span, Callable[[], Awaitable[None]]]] = [
            (span, functools.partial(self._hold, message, send_at)) for message, span, send_at in held
        ]
        for (i, plan), decision in zip(plans.items(), decisions, strict=True):
            message, span = messages[i]
            if isinstance(decision, Exception):
                failed[i] = decision
            elif decision is Decision.CANCELLED:
                firsts = [c.steps[0][0] for c in plan.chains]
                with trace.use_span(span):
                    announced.append(
                        self._settler.announce(*(state_event(j, S.DELIVERY_STATE_CANCELLED, CANCELLED) for j in firsts))
                    )
            elif message.topic:
                later.append((span, functools.partial(fan_out, self._db, self._bus, message)))
            elif templating.collects_digest(message.template):
                later += [(span, functools.partial(self._digests.collect, message, chain)) for chain in plan.chains]
            else:
                with current(span):
                    for chain in plan.chains:
                        if renderable := await self._settler.renderable(chain.steps):
                            deliveries.append((jobs.link(renderable), span))
                sent_at = from_timestamp(message.send_at) or from_timestamp(message.create_time) or now()
                hold = self._escalations.hold
                later += [(span, functools.partial(hold, e, sent_at + e.delay)) for e in plan.escalations]
        started = [in_span(span, step()) for span, step in later]
        await together([self._settler.route(deliveries, recipients), *announced, *started])
        return failed

    async def _firsts(self, message: work_pb2.AcceptedMessage) -> list[work_pb2.DeliveryJob]:
        """The first delivery of each chain: all that exists of a message before it is dispatched."""
        recipients = await self._recipients.load(_user_ids(message))
        return [chain.steps[0][0] for chain in jobs.plan(message, recipients.users).chains]


def _user_ids(message: work_pb2.AcceptedMessage) -> set[str]:
    return {r.user_id for r in message.recipients if r.user_id}
