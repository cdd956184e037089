"""SuppressionService: the suppression list, for operators to read and correct (a bounce that was the provider's
mistake, an address a customer asks to be mailed again) and for support to look an address up."""

from datetime import datetime

import grpc
from herald.v1 import suppression_service_pb2, suppression_service_pb2_grpc
from herald.v1 import suppression_service_pb2 as pb
from sqlalchemy import and_, or_, select, tuple_

from herald.libs import audit, categories, channels, pagination, storable
from herald.libs.callers import require_operator
from herald.libs.errors import InvalidArgument, NotFound
from herald.libs.ids import new_id
from herald.libs.masking import mask
from herald.libs.store import Database
from herald.services.router import tables
from herald.services.router.suppression_list import SuppressionList, normal, to_proto

T = tables.Suppression


class SuppressionService(suppression_service_pb2_grpc.SuppressionServiceServicer):
    def __init__(self, db: Database, suppressions: SuppressionList) -> None:
        self._db = db
        self._list = suppressions

    async def ListSuppressions(
        self, request: pb.ListSuppressionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSuppressionsResponse:
        require_operator()
        size = pagination.page_size(request.page_size)
        query = select(T)
        if request.channel:
            query = query.where(T.channel == request.channel)
        if request.address:
            query = query.where(T.address == normal(request.channel or "email", request.address))
        if request.reason:
            query = query.where(T.reason == request.reason)
        if after := pagination.decode(request.page_token, _is_key):
            when, channel, address, category = after.split("\n")
            at = datetime.fromisoformat(when)
            query = query.where(
                or_(
                    T.create_time < at,
                    and_(
                        T.create_time == at,
                        tuple_(T.channel, T.address, T.category) > (channel, address, int(category)),
                    ),
                )
            )
        query = query.order_by(T.create_time.desc(), T.channel, T.address, T.category).limit(size + 1)
        async with self._db.session() as session:
            rows = list(await session.scalars(query))
        last = rows[size - 1] if len(rows) > size else None
        token = (
            "\n".join((last.create_time.isoformat(), last.channel, last.address, str(last.category))) if last else ""
        )
        return pb.ListSuppressionsResponse(
            suppressions=[to_proto(row) for row in rows[:size]],
            next_page_token=pagination.encode(token) if token else "",
        )

    async def CreateSuppression(
        self, request: pb.CreateSuppressionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Suppression:
        caller = require_operator()
        entry = pb.Suppression()
        entry.CopyFrom(request.suppression)
        _validate(entry, "suppression.")
        entry.reason = entry.reason or pb.SUPPRESSION_REASON_MANUAL
        entry.source = f"operator:{caller.actor}"
        added = await self._list.add(entry, new_id("supp"))
        audit.changed(after=added)
        return added

    async def DeleteSuppression(
        self, request: pb.DeleteSuppressionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteSuppressionResponse:
        require_operator()
        _validate(request, "")
        removed = await self._list.remove(request.channel, request.address, request.category, new_id("supp"))
        if removed is None:
            raise NotFound(f"{request.channel} address {mask(request.address)} is not suppressed for that category")
        audit.changed(before=removed)
        return pb.DeleteSuppressionResponse(suppression=removed)


def _is_key(key: str) -> bool:
    parts = key.split("\n")
    if len(parts) != 4 or not parts[3].isdigit():
        return False
    try:
        datetime.fromisoformat(parts[0])
    except ValueError:
        return False
    return True


def _validate(entry: suppression_service_pb2.Suppression | pb.DeleteSuppressionRequest, prefix: str) -> None:
    bad: dict[str, str] = {}
    if why := channels.problem(entry.channel):
        bad[f"{prefix}channel"] = why
    if not entry.address.strip() or len(entry.address) > 320:
        bad[f"{prefix}address"] = "required, at most 320 characters"
    if entry.category not in (0, *categories.KNOWN):
        bad[f"{prefix}category"] = "a Category, or CATEGORY_UNSPECIFIED for every category"
    if isinstance(entry, suppression_service_pb2.Suppression):
        if entry.reason not in pb.SuppressionReason.values():
            bad[f"{prefix}reason"] = "a SuppressionReason"
        if len(entry.detail) > 1000:
            bad[f"{prefix}detail"] = "at most 1000 characters"
    bad.update(storable.nul_refusals(entry, prefix))
    if bad:
        raise InvalidArgument(bad)
