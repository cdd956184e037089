"""DirectoryService: the users herald can reach. Every call needs the admin token."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
from herald.v1 import directory_service_pb2 as pb
from herald.v1 import directory_service_pb2_grpc
from sqlalchemy import select

from libs import channels
from libs.auth import require_admin
from libs.errors import InvalidArgument, Unimplemented
from libs.store import Database
from libs.timeutil import now
from services.router import tables


class DirectoryService(directory_service_pb2_grpc.DirectoryServiceServicer):
    def __init__(self, db: Database, admin_token: str) -> None:
        self._db = db
        self._admin_token = admin_token

    async def UpsertUser(self, request: pb.UpsertUserRequest, context: grpc.aio.ServicerContext) -> pb.User:
        require_admin(context, self._admin_token)
        user = request.user
        _validate_user(user)
        async with self._db.session.begin() as session:
            row = await session.get(tables.User, user.user_id, with_for_update=True)
            if row is None:
                row = tables.User(user_id=user.user_id)
                session.add(row)
            row.addresses = dict(user.addresses)
            row.timezone = user.timezone
            row.locale = user.locale
            row.update_time = now()
        return user

    async def SetPreference(
        self, request: pb.SetPreferenceRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetPreferenceResponse:
        require_admin(context, self._admin_token)
        raise Unimplemented("SetPreference is not available yet in this herald version")


async def load_users(db: Database, user_ids: set[str]) -> dict[str, tables.User]:
    if not user_ids:
        return {}
    async with db.session() as session:
        rows = await session.scalars(select(tables.User).where(tables.User.user_id.in_(user_ids)))
        return {row.user_id: row for row in rows}


def _validate_user(user: pb.User) -> None:
    bad: dict[str, str] = {}
    if not user.user_id or len(user.user_id) > 200:
        bad["user.user_id"] = "required, at most 200 characters"
    for channel in user.addresses:
        if why := channels.problem(channel):
            bad[f"user.addresses[{channel[:40]}]"] = why
    if user.timezone:
        try:
            ZoneInfo(user.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            bad["user.timezone"] = f"'{user.timezone[:64]}' is not an IANA time zone name, e.g. 'Asia/Shanghai'"
    if bad:
        raise InvalidArgument(bad)
