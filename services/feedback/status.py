"""StatusService: what happened to a message. An app sees only its own messages."""

import base64
import binascii
import json
from collections import defaultdict
from datetime import datetime

import grpc
from herald.v1 import common_pb2, status_service_pb2_grpc
from herald.v1 import status_service_pb2 as pb
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from libs.auth import AppKeys
from libs.errors import InvalidArgument, NotFound
from libs.store import Database
from libs.timeutil import to_timestamp
from services.feedback import tables

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


class StatusService(status_service_pb2_grpc.StatusServiceServicer):
    def __init__(self, db: Database, keys: AppKeys) -> None:
        self._db = db
        self._keys = keys

    async def GetMessage(self, request: pb.GetMessageRequest, context: grpc.aio.ServicerContext) -> pb.Message:
        app = await self._keys.authenticate(context)
        if not request.message_id:
            raise InvalidArgument({"message_id": "required"})
        async with self._db.session() as session:
            message = await session.get(tables.Message, request.message_id)
            # Another app's message answers exactly like a missing one.
            if message is None or message.app_id != app.app_id:
                raise NotFound(f"message '{request.message_id[:64]}' not found")
            deliveries = list(
                await session.scalars(
                    select(tables.Delivery)
                    .where(tables.Delivery.message_id == message.message_id)
                    .order_by(tables.Delivery.create_time, tables.Delivery.delivery_id)
                )
            )
            history = await _histories(session, deliveries)
        return pb.Message(
            message_id=message.message_id,
            template_id=message.template_id,
            template_version=message.template_version,
            category=common_pb2.Category.ValueType(message.category),
            create_time=to_timestamp(message.create_time),
            deliveries=[_delivery_pb(d, history[d.delivery_id]) for d in deliveries],
        )

    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeliveriesResponse:
        app = await self._keys.authenticate(context)
        bad: dict[str, str] = {}
        if not 0 < len(request.user_id) <= 200:
            bad["user_id"] = "required, at most 200 characters"
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            bad["page_size"] = f"between 0 (= {DEFAULT_PAGE_SIZE}) and {MAX_PAGE_SIZE}"
        after = None
        if request.page_token:
            try:
                after = _position(request.page_token)
            except ValueError:
                bad["page_token"] = "not a next_page_token of this list"  # noqa: S105 (a message, not a secret)
        if bad:
            raise InvalidArgument(bad)
        size = request.page_size or DEFAULT_PAGE_SIZE
        D = tables.Delivery
        query = select(D).where(D.app_id == app.app_id, D.user_id == request.user_id)
        if request.channel:
            query = query.where(D.channel == request.channel)
        if request.state:
            query = query.where(D.state == request.state)
        if after is not None:
            query = query.where(
                or_(D.create_time < after[0], and_(D.create_time == after[0], D.delivery_id < after[1]))
            )
        async with self._db.session() as session:
            rows = list(
                await session.scalars(query.order_by(D.create_time.desc(), D.delivery_id.desc()).limit(size + 1))
            )
            page = rows[:size]
            history = await _histories(session, page)
        token = _token(page[-1]) if len(rows) > size else ""
        return pb.ListDeliveriesResponse(
            deliveries=[_delivery_pb(d, history[d.delivery_id]) for d in page], next_page_token=token
        )


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


def _token(last: tables.Delivery) -> str:
    """Where the next page starts: after this delivery in (create_time, delivery_id) order, newest first."""
    return base64.urlsafe_b64encode(json.dumps([last.create_time.isoformat(), last.delivery_id]).encode()).decode()


def _position(token: str) -> tuple[datetime, str]:
    try:
        when, delivery_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(when), str(delivery_id)
    except (TypeError, binascii.Error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(str(e)) from None


def _delivery_pb(row: tables.Delivery, events: list[tables.Event]) -> pb.Delivery:
    return pb.Delivery(
        delivery_id=row.delivery_id,
        message_id=row.message_id,
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
