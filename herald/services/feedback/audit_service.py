"""AuditService: who changed what, newest first, for admins, operators and support (the gate checks the roles;
docs/access.md). Pages continue after the last record of the previous one in (occur_time, event_id) order."""

import grpc
from google.protobuf import json_format
from herald.v1 import audit_service_pb2 as pb
from herald.v1 import audit_service_pb2_grpc, events_pb2
from sqlalchemy import and_, or_, select

from herald.libs.callers import require_operator
from herald.libs.errors import InvalidArgument
from herald.libs.store import Database
from herald.services.feedback import search, tables

A = tables.AuditRecord
MAX_PAGE_SIZE = 1000


class AuditService(audit_service_pb2_grpc.AuditServiceServicer):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAuditEventsResponse:
        require_operator()
        bad: dict[str, str] = {}
        page = search.page_of(request.page_size, request.page_token, bad, most=MAX_PAGE_SIZE)
        start, end = search.time_range(request, bad)
        if bad:
            raise InvalidArgument(bad)
        query = select(A)
        if start is not None:
            query = query.where(A.occur_time >= start)
        if end is not None:
            query = query.where(A.occur_time < end)
        if request.actor:
            query = query.where(A.actor == request.actor)
        if request.target:
            query = query.where(A.target == request.target)
        if request.action.endswith("/"):
            query = query.where(A.action.startswith(request.action, autoescape=True))
        elif request.action:
            query = query.where(A.action == request.action)
        if page.after is not None:
            when, event_id = page.after
            query = query.where(or_(A.occur_time < when, and_(A.occur_time == when, A.event_id < event_id)))
        query = query.order_by(A.occur_time.desc(), A.event_id.desc()).limit(page.size + 1)
        async with self._db.session() as session:
            rows = list(await session.scalars(query))
        events = [json_format.Parse(row.record, events_pb2.AuditEvent()) for row in rows[: page.size]]
        last = rows[page.size - 1] if len(rows) > page.size else None
        return pb.ListAuditEventsResponse(
            audit_events=events, next_page_token=search.token(last.occur_time, last.event_id) if last else ""
        )
