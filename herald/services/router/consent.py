"""What providers and recipients said about receiving herald's messages, recorded where routing reads it.

The adapters hear it (a bounce or complaint a provider reports, a reader's one-click unsubscribe, an SMS STOP or
START) and publish a ConsentReport on herald.message.consent; the router, which owns the directory and the
suppression list, records it here and publishes the public event. Each report's id is the event's id, so a
redelivered report changes nothing twice and publishes nothing twice.
"""

from datetime import datetime, timedelta

from herald.v1 import events_pb2, suppression_service_pb2
from sqlalchemy import delete, func, select

from herald.internal.v1 import work_pb2
from herald.libs.bus import Incoming, Publisher
from herald.libs.store import Database
from herald.libs.timeutil import from_timestamp, now
from herald.services.router import tables
from herald.services.router.directory import set_preference
from herald.services.router.suppression_list import SuppressionList, normal

R = suppression_service_pb2.SuppressionReason
SOFT_BOUNCES = tables.Base.metadata.tables[tables.SoftBounce.__tablename__]


class ConsentRecorder:
    def __init__(
        self, db: Database, bus: Publisher, suppressions: SuppressionList, soft_bounce_limit: int, window_days: int
    ) -> None:
        self._db = db
        self._bus = bus
        self._suppressions = suppressions
        self._limit = soft_bounce_limit
        self._window = timedelta(days=window_days)

    async def handle(self, incoming: Incoming) -> None:
        report = work_pb2.ConsentReport.FromString(incoming.data)
        when = from_timestamp(report.occur_time) or now()
        match report.WhichOneof("report"):
            case "suppress":
                await self._suppressions.add(report.suppress, report.report_id, when)
            case "lift":
                lift = report.lift
                await self._suppressions.remove(
                    lift.channel, lift.address, lift.category, report.report_id, only_reason=lift.reason
                )
            case "opt_out":
                change = events_pb2.PreferenceEvent()
                change.CopyFrom(report.opt_out)
                change.event_id = report.report_id
                await set_preference(self._db, self._bus, change)
            case "soft_bounce":
                await self._soft_bounce(report.report_id, report.soft_bounce, when)

    async def _soft_bounce(self, report_id: str, bounce: suppression_service_pb2.Suppression, when: datetime) -> None:
        """Count it; the bounce that reaches the limit within the window suppresses the address."""
        channel, address = bounce.channel, normal(bounce.channel, bounce.address)
        of_address = (tables.SoftBounce.channel == channel, tables.SoftBounce.address == address)
        row = {"report_id": report_id, "channel": channel, "address": address, "occur_time": when}
        async with self._db.session.begin() as session:
            await self._db.insert_rows(session, SOFT_BOUNCES, [row], key=["report_id"])  # a repeat counts once
            await session.execute(
                delete(tables.SoftBounce).where(*of_address, tables.SoftBounce.occur_time < now() - self._window)
            )
            counted = await session.scalar(select(func.count()).select_from(tables.SoftBounce).where(*of_address))
        if (counted or 0) >= self._limit:
            entry = suppression_service_pb2.Suppression()
            entry.CopyFrom(bounce)
            entry.reason = R.SUPPRESSION_REASON_SOFT_BOUNCES
            entry.detail = f"{counted} temporary bounces within {self._window.days} days; the last: {bounce.detail}"
            await self._suppressions.add(entry, f"{report_id}.suppressed")
