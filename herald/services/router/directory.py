"""DirectoryService: the users herald can reach and their preferences. Every call needs the admin token."""

from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
from google.protobuf import json_format
from herald.v1 import common_pb2, directory_service_pb2_grpc, events_pb2
from herald.v1 import directory_service_pb2 as pb
from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.libs import audit, channels, quiet_hours, storable, subjects
from herald.libs.bus import Bus, Incoming, Publisher
from herald.libs.callers import require_operator
from herald.libs.errors import InvalidArgument, NotFound
from herald.libs.ids import new_id
from herald.libs.store import Database
from herald.libs.timeutil import from_timestamp, now, to_timestamp
from herald.services.router import tables

MAX_IMPORT_CHUNK = 1000


class DirectoryService(directory_service_pb2_grpc.DirectoryServiceServicer):
    def __init__(self, db: Database, bus: Bus) -> None:
        self._db = db
        self._bus = bus

    async def UpsertUser(self, request: pb.UpsertUserRequest, context: grpc.aio.ServicerContext) -> pb.User:
        require_operator()
        _validate_user(request.user, "user")
        before: pb.User | None = None
        try:
            before = await self.GetUser(pb.GetUserRequest(user_id=request.user.user_id), context)
            before.ClearField("preferences")  # an upsert leaves them as they are
        except NotFound:
            pass
        await self._upsert([request.user])
        audit.changed(before=before, after=request.user)
        return request.user

    async def GetUser(self, request: pb.GetUserRequest, context: grpc.aio.ServicerContext) -> pb.User:
        require_operator()
        async with self._db.session() as session:
            row = await session.get(tables.User, request.user_id)
            preferences = list(
                await session.scalars(select(tables.Preference).where(tables.Preference.user_id == request.user_id))
            )
        if row is None and not preferences:
            raise NotFound(f"user '{request.user_id[:200]}' not found")
        user = pb.User(user_id=request.user_id)
        if row is not None:
            user.addresses.update(row.addresses)
            user.timezone, user.locale, user.preferred_channel = row.timezone, row.locale, row.preferred_channel
            if row.quiet_hours is not None:
                json_format.ParseDict(row.quiet_hours, user.quiet_hours)
        user.preferences.extend(
            pb.Preference(
                category=common_pb2.Category.ValueType(p.category),
                channel=p.channel,
                opted_out=p.opted_out,
                update_time=to_timestamp(p.update_time),
            )
            for p in sorted(preferences, key=lambda p: (p.category, p.channel))
        )
        return user

    async def DeleteUser(
        self, request: pb.DeleteUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteUserResponse:
        require_operator()
        if not request.user_id:
            raise InvalidArgument({"user_id": "required"})
        async with self._db.session.begin() as session:
            await session.execute(delete(tables.User).where(tables.User.user_id == request.user_id))
            await session.execute(delete(tables.Preference).where(tables.Preference.user_id == request.user_id))
            await session.execute(
                delete(tables.TopicSubscriber).where(tables.TopicSubscriber.user_id == request.user_id)
            )
            await session.execute(delete(tables.DigestItem).where(tables.DigestItem.user_id == request.user_id))
        # Every other service forgets the user too. Repeating the call (after UNAVAILABLE) repeats both steps.
        erased = events_pb2.UserErasedEvent(
            event_id=new_id("erase"), user_id=request.user_id, occur_time=to_timestamp(now())
        )
        await self._bus.publish(subjects.USER_ERASED, erased.SerializeToString(), msg_id=erased.event_id)
        audit.changed()  # the record names the user id, and keeps nothing else of an erased user
        return pb.DeleteUserResponse(user_id=request.user_id)

    async def ImportUsers(
        self, requests: AsyncIterator[pb.ImportUsersRequest], context: grpc.aio.ServicerContext
    ) -> pb.ImportUsersResponse:
        require_operator()
        imported = 0
        async for request in requests:
            if len(request.users) > MAX_IMPORT_CHUNK:
                raise InvalidArgument({"users": f"at most {MAX_IMPORT_CHUNK} users per message"})
            for i, user in enumerate(request.users):
                _validate_user(user, f"users[{imported + i}]")
            await self._upsert(list(request.users))
            imported += len(request.users)
        return pb.ImportUsersResponse(imported=imported)

    async def SetPreference(
        self, request: pb.SetPreferenceRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetPreferenceResponse:
        require_operator()
        _validate_preference(request)
        await set_preference(
            self._db,
            self._bus,
            events_pb2.PreferenceEvent(
                event_id=new_id("pref"),
                user_id=request.user_id,
                category=request.category,
                channel=request.channel,
                opted_out=request.opted_out,
                occur_time=to_timestamp(now()),
            ),
        )
        return pb.SetPreferenceResponse(
            user_id=request.user_id, category=request.category, channel=request.channel, opted_out=request.opted_out
        )

    async def _upsert(self, users: list[pb.User]) -> None:
        async with self._db.session.begin() as session:
            rows = await session.scalars(
                select(tables.User).where(tables.User.user_id.in_({u.user_id for u in users})).with_for_update()
            )
            existing = {row.user_id: row for row in rows}
            for user in users:
                row = existing.get(user.user_id)
                if row is None:
                    row = existing[user.user_id] = tables.User(user_id=user.user_id)
                    session.add(row)
                row.addresses = dict(user.addresses)
                row.timezone = user.timezone
                row.locale = user.locale
                row.quiet_hours = json_format.MessageToDict(user.quiet_hours) if user.HasField("quiet_hours") else None
                row.preferred_channel = user.preferred_channel
                row.update_time = now()


async def set_preference(db: Database, bus: Publisher, change: events_pb2.PreferenceEvent) -> None:
    """Record the opt-out (or opt-in), then publish it for the member system; a repeated event id publishes once."""
    async with db.session.begin() as session:
        key = (change.user_id, change.category, change.channel)
        row = await session.get(tables.Preference, key, with_for_update=True)
        if row is None:
            row = tables.Preference(user_id=change.user_id, category=change.category, channel=change.channel)
            session.add(row)
        row.opted_out = change.opted_out
        row.update_time = from_timestamp(change.occur_time) or now()
    subject = subjects.UNSUBSCRIBED if change.opted_out else subjects.SUBSCRIBED
    await bus.publish(subject, change.SerializeToString(), msg_id=change.event_id)


async def mark_dead(db: Database, incoming: Incoming) -> None:
    """A provider said a user's address no longer exists: stop using it, unless the user has a new one by now.
    Marking twice changes nothing, so a redelivered event is harmless."""
    event = events_pb2.DeadAddressEvent.FromString(incoming.data)
    async with db.session.begin() as session:
        row = await session.get(tables.User, event.user_id, with_for_update=True)
        if row is None or row.addresses.get(event.channel) != event.address:
            return
        when = (from_timestamp(event.occur_time) or now()).isoformat(timespec="seconds")
        mark = {"address": event.address, "reason": event.reason, "time": when}
        row.dead_addresses = {**(row.dead_addresses or {}), event.channel: mark}


# Built once: a statement built per read coerced each user id anew, a third of what reading no rows cost.
USERS = select(tables.User).where(tables.User.user_id.in_(bindparam("user_ids", expanding=True)))


async def load_users(session: AsyncSession, user_ids: set[str]) -> dict[str, tables.User]:
    if not user_ids:
        return {}
    rows = await session.scalars(USERS, {"user_ids": list(user_ids)})
    return {row.user_id: row for row in rows}


def _validate_user(user: pb.User, field: str) -> None:
    bad: dict[str, str] = {}
    if not user.user_id or len(user.user_id) > 200:
        bad[f"{field}.user_id"] = "required, at most 200 characters"
    for channel, address in user.addresses.items():
        if why := channels.problem(channel) or channels.address_problem(channel, address):
            bad[f"{field}.addresses[{channel[:40]}]"] = why
    if user.timezone:
        try:
            ZoneInfo(user.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            bad[f"{field}.timezone"] = f"'{user.timezone[:64]}' is not an IANA time zone name, e.g. 'Asia/Shanghai'"
    if len(user.locale) > 35:
        bad[f"{field}.locale"] = "at most 35 characters"
    if user.preferred_channel and (why := channels.problem(user.preferred_channel)):
        bad[f"{field}.preferred_channel"] = why
    if user.HasField("quiet_hours") and (why := quiet_hours.problem(user.quiet_hours)):
        bad[f"{field}.quiet_hours"] = why
    bad.update(storable.nul_refusals(user, f"{field}."))
    if bad:
        raise InvalidArgument(bad)


def _validate_preference(request: pb.SetPreferenceRequest) -> None:
    bad: dict[str, str] = {}
    if not request.user_id or len(request.user_id) > 200:
        bad["user_id"] = "required, at most 200 characters"
    if request.category not in (common_pb2.CATEGORY_NOTIFICATION, common_pb2.CATEGORY_MARKETING):
        bad["category"] = (
            "critical messages cannot be opted out of"
            if request.category == common_pb2.CATEGORY_CRITICAL
            else "NOTIFICATION or MARKETING"
        )
    if request.channel and (why := channels.problem(request.channel)):
        bad["channel"] = why
    if bad:
        raise InvalidArgument(bad)
