"""InboxService: devices and app backends read the inbox timeline (see protos/herald/v1/inbox_service.proto)."""

import asyncio
from collections.abc import AsyncIterator, Iterable

import grpc
from google.protobuf import timestamp_pb2
from herald.v1 import common_pb2, inbox_service_pb2_grpc
from herald.v1 import inbox_service_pb2 as pb

from herald.internal.v1 import work_pb2
from herald.libs import events, storable
from herald.libs.auth import AppKeys, bearer_token, key_hash
from herald.libs.bus import Bus
from herald.libs.callers import INBOX_TOKEN_PREFIX
from herald.libs.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Unauthenticated
from herald.libs.store import Database
from herald.libs.timeutil import duration_field, now, to_timestamp
from herald.services.adapters.inbox import notices, timeline_store
from herald.services.adapters.inbox.inbox_tokens import DEFAULT_TTL, MAX_TTL, BadToken, InboxTokens
from herald.services.adapters.inbox.timeline_store import Item, Owner
from herald.services.adapters.inbox.writer import PROVIDER

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Items a Subscribe stream reads at a time while catching up.
PAGE = 500


class InboxService(inbox_service_pb2_grpc.InboxServiceServicer):
    def __init__(self, db: Database, bus: Bus, keys: AppKeys, tokens: InboxTokens) -> None:
        self._db = db
        self._bus = bus
        self._keys = keys
        self._tokens = tokens

    async def Sync(self, request: pb.SyncRequest, context: grpc.aio.ServicerContext) -> pb.SyncResponse:
        owner = await self._owner(context, request.user_id)
        _check_sequences(request)
        if not 0 <= request.limit <= MAX_LIMIT:
            raise InvalidArgument({"limit": f"between 0 (= {DEFAULT_LIMIT}) and {MAX_LIMIT}"})
        async with self._db.session.begin() as session:
            items = await timeline_store.after(session, owner, request.after_seq, request.limit or DEFAULT_LIMIT)
            first = timeline_store.delivered(items, now())
            highest = await timeline_store.max_seq(session, owner)
            unread = await timeline_store.unread_count(session, owner)
        await self._record(owner, first, common_pb2.DELIVERY_STATE_DELIVERED)
        return pb.SyncResponse(items=[_item(i) for i in items], max_seq=highest, unread_count=unread)

    async def Subscribe(
        self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.InboxItem]:
        owner = await self._owner(context, request.user_id)
        _check_sequences(request)
        cursor = request.after_seq
        # Listening starts before the first read, so nothing stored in between goes unnoticed.
        async with notices.watch(self._bus, owner) as changes:
            touched: set[int] = set()
            while True:
                async with self._db.session.begin() as session:
                    changed = await timeline_store.by_seq(session, owner, {s for s in touched if s <= cursor})
                    new = await timeline_store.after(session, owner, cursor, PAGE)
                    first = timeline_store.delivered(new, now())
                await self._record(owner, first, common_pb2.DELIVERY_STATE_DELIVERED)
                for item in [*changed, *new]:
                    yield _item(item)
                cursor = new[-1].seq if new else cursor
                touched = set() if len(new) == PAGE else await changes.next()

    async def MarkRead(self, request: pb.MarkReadRequest, context: grpc.aio.ServicerContext) -> pb.MarkReadResponse:
        owner = await self._owner(context, request.user_id)
        _check_sequences(request)
        if not request.seqs and not request.up_to_seq:
            raise InvalidArgument({"seqs": "name the items to mark read, or set up_to_seq"})
        async with self._db.session.begin() as session:
            items = await timeline_store.unread(session, owner, request.seqs, request.up_to_seq)
            for item in items:
                item.read_time = now()
            await session.flush()
            unread = await timeline_store.unread_count(session, owner)
        await self._record(owner, items, common_pb2.DELIVERY_STATE_READ)
        await notices.announce(self._bus, owner, (i.seq for i in items), changed=True)
        return pb.MarkReadResponse(marked_count=len(items), unread_count=unread)

    async def GetUnreadCount(
        self, request: pb.GetUnreadCountRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUnreadCountResponse:
        owner = await self._owner(context, request.user_id)
        async with self._db.session() as session:
            return pb.GetUnreadCountResponse(
                unread_count=await timeline_store.unread_count(session, owner),
                max_seq=await timeline_store.max_seq(session, owner),
            )

    async def DeleteItems(
        self, request: pb.DeleteItemsRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteItemsResponse:
        owner = await self._owner(context, request.user_id)
        _check_sequences(request)
        if not request.seqs:
            raise InvalidArgument({"seqs": "name the items to delete"})
        async with self._db.session.begin() as session:
            items = [i for i in await timeline_store.by_seq(session, owner, request.seqs) if i.delete_time is None]
            for item in items:
                # The sequence stays (devices must learn of the deletion); the content goes.
                item.delete_time, item.title, item.body, item.data = now(), "", "", {}
        await notices.announce(self._bus, owner, (i.seq for i in items), changed=True)
        return pb.DeleteItemsResponse(deleted_count=len(items))

    async def CreateInboxToken(
        self, request: pb.CreateInboxTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateInboxTokenResponse:
        if bearer_token(context).startswith(INBOX_TOKEN_PREFIX):
            raise PermissionDenied("an inbox token cannot mint inbox tokens; call with the app's API key")
        app = await self._keys.authenticate(context)
        if not self._tokens.enabled:
            raise FailedPrecondition("inbox tokens are off: HERALD_INBOX_TOKEN_SECRET is not set on herald-adapters")
        bad = _user_problem(request.user_id)
        length = duration_field(request, "ttl", bad)
        ttl = int(length.total_seconds()) if length is not None else DEFAULT_TTL
        if "ttl" not in bad and not 0 < ttl <= MAX_TTL:
            bad["ttl"] = f"between 1 second and {MAX_TTL // 3600} hours"
        if bad:
            raise InvalidArgument(bad)
        token, expires = self._tokens.mint(app.app_id, request.user_id, key_hash(bearer_token(context)), ttl)
        return pb.CreateInboxTokenResponse(token=token, expire_time=timestamp_pb2.Timestamp(seconds=expires))

    async def _owner(self, context: grpc.aio.ServicerContext, user_id: str) -> Owner:
        """Whose inbox the caller may read: the token's user, or any user of the key's app."""
        token = bearer_token(context)
        if token.startswith(INBOX_TOKEN_PREFIX):
            if not self._tokens.enabled:
                raise Unauthenticated("inbox tokens are off on this server")
            try:
                grant = self._tokens.verify(token)
            except BadToken as e:
                raise Unauthenticated(str(e)) from None
            if user_id and user_id != grant.user_id:
                raise PermissionDenied("this inbox token is for another user")
            # The app as it is now: disabled, or the key that minted the token rotated out, ends the token.
            try:
                await self._keys.check(grant.key_hash)
            except Unauthenticated:
                raise Unauthenticated("the API key this inbox token was made with no longer works") from None
            return Owner(grant.app_id, grant.user_id)
        app = await self._keys.authenticate(context)
        if bad := _user_problem(user_id):
            raise InvalidArgument(bad)
        return Owner(app.app_id, user_id)

    async def _record(self, owner: Owner, items: Iterable[Item], state: common_pb2.DeliveryState.ValueType) -> None:
        """DELIVERED when a device first gets an item, READ when it is read: the status and statistics see both."""
        jobs = [
            work_pb2.DeliveryJob(
                delivery_id=item.delivery_id,
                message_id=item.message_id,
                app_id=owner.app_id,
                user_id=owner.user_id,
                channel="inbox",
            )
            for item in items
        ]
        await asyncio.gather(
            *(events.publish(self._bus, events.event(job, state, attempt=1, provider=PROVIDER)) for job in jobs)
        )


def _user_problem(user_id: str) -> dict[str, str]:
    return {} if 0 < len(user_id) <= 200 else {"user_id": "required, at most 200 characters"}


def _item(item: Item) -> pb.InboxItem:
    message = pb.InboxItem(
        seq=item.seq,
        message_id=item.message_id,
        title=item.title,
        body=item.body,
        read=item.read_time is not None,
        create_time=to_timestamp(item.create_time),
        data=item.data,
        deleted=item.delete_time is not None,
    )
    if item.read_time is not None:
        message.read_time.CopyFrom(to_timestamp(item.read_time))
    return message


def _check_sequences(
    request: pb.SyncRequest | pb.SubscribeRequest | pb.MarkReadRequest | pb.DeleteItemsRequest,
) -> None:
    """Sequences are uint64 on the wire and BIGINT in the tables: one past what a table holds names no item."""
    bad: dict[str, str] = {}
    for field in ("after_seq", "up_to_seq"):
        if getattr(request, field, 0) > storable.MAX_INTEGER:
            bad[field] = f"at most {storable.MAX_INTEGER}"
    for i, seq in enumerate(getattr(request, "seqs", ())):
        if seq > storable.MAX_INTEGER:
            bad[f"seqs[{i}]"] = f"at most {storable.MAX_INTEGER}"
    if bad:
        raise InvalidArgument(bad)
