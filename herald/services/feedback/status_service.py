"""StatusService: what happened to a message, and how sends did. An app sees only its own messages; the admin
token may read every app's statistics."""

from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import grpc
from herald.v1 import common_pb2, status_service_pb2_grpc
from herald.v1 import status_service_pb2 as pb
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.libs.auth import AppKeys
from herald.libs.callers import operator
from herald.libs.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from herald.libs.store import Database
from herald.libs.timeutil import timestamp_field, to_timestamp
from herald.services.feedback import export, search, stats, tables

# A message's deliveries per GetMessage page: by default and at most.
MESSAGE_PAGE_SIZE = 100
MAX_MESSAGE_PAGE_SIZE = 1000
MAX_STATS_RANGE = timedelta(days=400)
MAX_EXPORT_RANGE = timedelta(days=31)
D, MS = tables.Delivery, tables.MessageState


class StatusService(status_service_pb2_grpc.StatusServiceServicer):
    def __init__(self, db: Database, keys: AppKeys) -> None:
        self._db = db
        self._keys = keys

    async def GetMessage(self, request: pb.GetMessageRequest, context: grpc.aio.ServicerContext) -> pb.Message:
        """The counts by state cover the whole message; the deliveries are one page, so a campaign of a million
        recipients answers as quickly as a single Send."""
        app_id = await self._scope("", context)
        bad: dict[str, str] = {}
        if not request.message_id:
            bad["message_id"] = "required"
        page = search.page_of(request.page_size, request.page_token, bad, MESSAGE_PAGE_SIZE, MAX_MESSAGE_PAGE_SIZE)
        if bad:
            raise InvalidArgument(bad)
        filters = search.Filters(
            message_id=request.message_id, user_id=request.user_id, channel=request.channel, state=request.state
        )
        async with self._db.session() as session:
            message = await session.get(tables.Message, request.message_id)
            # Another app's message answers exactly like a missing one.
            if message is None or app_id not in (None, message.app_id):
                raise NotFound(f"message '{request.message_id[:64]}' not found")
            counts = await session.execute(
                select(MS.state, MS.deliveries).where(MS.message_id == message.message_id, MS.deliveries > 0)
            )
            state_counts = [
                pb.DeliveryStateCount(state=common_pb2.DeliveryState.ValueType(state), count=n)
                for state, n in sorted(counts.all())
            ]
            found = await search.find(session, None, filters, page, oldest_first=True)
            history = await _histories(session, found[: page.size])
        deliveries, token = search.paged(found, page, lambda d: _delivery_pb(d, history[d.delivery_id]))
        return pb.Message(
            message_id=message.message_id,
            template_id=message.template_id,
            template_version=message.template_version,
            category=common_pb2.Category.ValueType(message.category),
            create_time=to_timestamp(message.create_time),
            deliveries=deliveries,
            next_page_token=token,
            delivery_count=sum(c.count for c in state_counts),
            delivery_state_counts=state_counts,
            trace_id=message.trace_id,
        )

    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeliveriesResponse:
        app_id = await self._scope("", context)
        bad: dict[str, str] = {}
        if not 0 < len(request.user_id) <= 200:
            bad["user_id"] = "required, at most 200 characters"
        page = search.page_of(request.page_size, request.page_token, bad)
        if bad:
            raise InvalidArgument(bad)
        filters = search.Filters(user_id=request.user_id, channel=request.channel, state=request.state)
        async with self._db.session() as session:
            found = await search.find(session, app_id, filters, page)
            history = await _histories(session, found[: page.size])
        deliveries, token = search.paged(found, page, lambda d: _delivery_pb(d, history[d.delivery_id]))
        return pb.ListDeliveriesResponse(deliveries=deliveries, next_page_token=token)

    async def SearchDeliveries(
        self, request: pb.SearchDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchDeliveriesResponse:
        app_id = await self._scope("", context)
        bad: dict[str, str] = {}
        page = search.page_of(request.page_size, request.page_token, bad)
        if len(search.words(request.query)) > search.MAX_QUERY_WORDS:
            bad["query"] = f"at most {search.MAX_QUERY_WORDS} words"
        start, end = search.time_range(request, bad)
        if bad:
            raise InvalidArgument(bad)
        filters = search.Filters(
            user_id=request.user_id,
            template_id=request.template_id,
            channel=request.channel,
            state=request.state,
            start=start,
            end=end,
            query=request.query,
        )
        async with self._db.session() as session:
            found = await search.find(session, app_id, filters, page)
        deliveries, token = search.paged(found, page, lambda d: _delivery_pb(d, []))
        return pb.SearchDeliveriesResponse(deliveries=deliveries, next_page_token=token)

    async def GetStats(self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext) -> pb.GetStatsResponse:
        app_id = await self._scope(request.app_id, context)
        bad: dict[str, str] = {}
        start, end = _required_range(request, MAX_STATS_RANGE, bad)
        if request.interval not in pb.StatsInterval.values():
            bad["interval"] = "one of STATS_INTERVAL_HOUR, STATS_INTERVAL_DAY, or unspecified for the whole range"
        for n, dimension in enumerate(request.group_by):
            if dimension not in stats.DIMENSIONS:
                bad[f"group_by[{n}]"] = "one of STATS_DIMENSION_APP, _CHANNEL, _TEMPLATE, _PROVIDER"
        if bad or start is None or end is None:
            raise InvalidArgument(bad)
        query = stats.Query(
            start=start,
            end=end,
            interval=request.interval,
            group_by=tuple(request.group_by),
            app_id=app_id,
            channel=request.channel,
            template_id=request.template_id,
        )
        async with self._db.session() as session:
            return pb.GetStatsResponse(rows=await stats.report(session, query))

    async def ExportEvents(
        self, request: pb.ExportEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ExportEventsResponse]:
        app_id = await self._scope(request.app_id, context)
        bad: dict[str, str] = {}
        start, end = _required_range(request, MAX_EXPORT_RANGE, bad)
        if request.format not in (pb.EXPORT_FORMAT_CSV, pb.EXPORT_FORMAT_PARQUET):
            bad["format"] = "EXPORT_FORMAT_CSV or EXPORT_FORMAT_PARQUET"
        if bad or start is None or end is None:
            raise InvalidArgument(bad)
        if request.format == pb.EXPORT_FORMAT_PARQUET and not export.parquet_installed():
            raise FailedPrecondition(
                "Parquet export is not installed on this herald-feedback (the `parquet` extra); CSV works"
            )
        async for data in export.export(self._db, export.Range(start, end, app_id), request.format):
            yield pb.ExportEventsResponse(data=data)

    async def _scope(self, app_id: str, context: grpc.aio.ServicerContext) -> str | None:
        """The app whose messages, statistics or events the caller may read: an operator's choice (None = every
        app; the gate has checked the operator's roles), or the key's own app."""
        if operator() is not None:
            return app_id or None
        app = await self._keys.authenticate(context)
        if app_id and app_id != app.app_id:
            raise PermissionDenied(f"app {app.app_id} may not read the data of app '{app_id[:64]}'")
        return app.app_id


def _required_range(
    request: pb.GetStatsRequest | pb.ExportEventsRequest, longest: timedelta, bad: dict[str, str]
) -> tuple[datetime | None, datetime | None]:
    """start_time and end_time, both required, in order and at most `longest` apart; problems go into `bad`."""
    start = timestamp_field(request, "start_time", bad)
    end = timestamp_field(request, "end_time", bad)
    if start is None:
        bad.setdefault("start_time", "required")
    if end is None:
        bad.setdefault("end_time", "required")
    elif start is not None and not timedelta(0) < end - start <= longest:
        bad["end_time"] = f"after start_time, by at most {longest.days} days"
    return start, end


async def _histories(session: AsyncSession, deliveries: list[tables.Delivery]) -> dict[str, list[tables.Event]]:
    history: dict[str, list[tables.Event]] = defaultdict(list)
    if deliveries:
        rows = await session.scalars(
            select(tables.Event)
            .where(tables.Event.delivery_id.in_([d.delivery_id for d in deliveries]))
            .order_by(tables.Event.occur_time, tables.Event.attempt)
        )
        for event in rows:
            history[event.delivery_id].append(event)
    return history


def _delivery_pb(row: tables.Delivery, events: list[tables.Event]) -> pb.Delivery:
    return pb.Delivery(
        delivery_id=row.delivery_id,
        message_id=row.message_id,
        template_id=row.template_id,
        content=row.content,
        user_id=row.user_id,
        channel=row.channel,
        state=common_pb2.DeliveryState.ValueType(row.state),
        attempts=row.attempts,
        reason=row.reason,
        provider=row.provider,
        create_time=to_timestamp(row.create_time),
        update_time=to_timestamp(row.update_time),
        history=[
            pb.DeliveryStateChange(
                state=common_pb2.DeliveryState.ValueType(e.state),
                attempt=e.attempt,
                reason=e.reason,
                provider=e.provider,
                occur_time=to_timestamp(e.occur_time),
            )
            for e in events
        ],
    )
