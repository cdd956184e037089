"""A digest's deliveries: a send collected into its recipient's digest instead of routed, and, at the window's
end, the digest routed as its first item's delivery while every other item's is DIGESTED, naming it."""

from herald.v1 import common_pb2
from opentelemetry import trace

from herald.internal.v1 import work_pb2
from herald.services.router import jobs
from herald.services.router.digests import Digests, ready
from herald.services.router.recipients import RecipientsReader
from herald.services.router.settling import Settler, state_event

S = common_pb2


class DigestRouting:
    def __init__(self, digests: Digests, recipients: RecipientsReader, settler: Settler) -> None:
        self._digests = digests
        self._recipients = recipients
        self._settler = settler

    async def collect(self, message: work_pb2.AcceptedMessage, chain: jobs.Chain) -> None:
        """Collect a recipient's delivery into its digest instead of routing it now."""
        if not (renderable := await self._settler.renderable(chain.steps)):
            return
        job = jobs.link(renderable)
        carrier, due = await self._digests.add(message, job, chain.values)
        at = due.isoformat(timespec="seconds")
        if carrier == job.delivery_id:  # its content is the digest's, known at the window's end
            reason = f"digest: collecting until {at}, then sent as this delivery"
            await self._settler.announce(state_event(job, S.DELIVERY_STATE_SCHEDULED, reason, content=""))
        else:
            reason = f"digest: collected into the digest delivery {carrier}, sent at {at}"
            await self._settler.announce(state_event(job, S.DELIVERY_STATE_SCHEDULED, reason))

    async def close(self, collection: work_pb2.DigestCollection) -> None:
        """Route a digest whose window ended. Its items are dropped only then: a redelivery publishes the same
        again."""
        if items := await self._digests.close(collection):
            step, carried = ready(collection, items)
            job = step[0]
            reason = f"carried by the digest delivery {job.delivery_id} ({len(items)} items)"
            await self._settler.announce(*(state_event(item, S.DELIVERY_STATE_DIGESTED, reason) for item in carried))
            if renderable := await self._settler.renderable([step]):
                recipients = await self._recipients.load({job.user_id} - {""})
                await self._settler.route([(renderable[0], trace.get_current_span())], recipients)
        await self._digests.forget(collection)
