"""TopicService: an app's topics and their subscribers, and the pages of subscribers a Send to a topic fans out to.

Subscribers are rows of router_topic_subscribers keyed (app, topic, user id), so adding them in bulk is one
insert-or-skip statement per chunk, and fan-out and listing read them in user-id order by keyset. Each change
that did something is published as a TopicSubscriptionEvent, a chunk at a time, like opt-outs.
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc
from herald.v1 import events_pb2, topic_service_pb2_grpc
from herald.v1 import topic_service_pb2 as pb
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from herald.libs import audit, pagination, storable, subjects
from herald.libs.auth import AppKeys
from herald.libs.bus import Bus
from herald.libs.callers import operator
from herald.libs.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from herald.libs.ids import CHOSEN_KEY, CHOSEN_KEY_RULE, new_id
from herald.libs.store import Database
from herald.libs.timeutil import now, to_timestamp
from herald.libs.topics import TopicRegistry
from herald.services.router import tables
from herald.services.router.intake_client import IntakeClient

MAX_CHUNK = 1000
# A message of a bulk change's stream, and what the change does to one (the users it changed).
Chunk = pb.AddSubscribersRequest | pb.RemoveSubscribersRequest
Change = Callable[[AsyncSession, str, str, list[str]], Awaitable[list[str]]]
MAX_USER_ID_CHARS = 200
T = tables.TopicSubscriber
SUBSCRIBERS = tables.Base.metadata.tables["router_topic_subscribers"]


class TopicService(topic_service_pb2_grpc.TopicServiceServicer):
    def __init__(self, db: Database, bus: Bus, keys: AppKeys, registry: TopicRegistry, intake: IntakeClient) -> None:
        self._db = db
        self._bus = bus
        self._keys = keys
        self._registry = registry
        self._intake = intake

    async def CreateTopic(self, request: pb.CreateTopicRequest, context: grpc.aio.ServicerContext) -> pb.Topic:
        app_id = await self._scope(context, request.app_id)
        bad = _key_problem(request.topic.topic_key, "topic.topic_key")
        if len(request.topic.name) > 200:
            bad["topic.name"] = "at most 200 characters"
        bad.update(storable.nul_refusals(request.topic, "topic."))
        if bad:
            raise InvalidArgument(bad)
        row = tables.Topic(app_id=app_id, topic_key=request.topic.topic_key, name=request.topic.name, create_time=now())
        try:
            async with self._db.session.begin() as session:
                session.add(row)
        except IntegrityError as e:
            raise AlreadyExists(f"topic '{row.topic_key}' already exists") from e
        await self._registry.register(app_id, row.topic_key)
        return _topic(row, 0)

    async def GetTopic(self, request: pb.GetTopicRequest, context: grpc.aio.ServicerContext) -> pb.Topic:
        app_id = await self._scope(context, request.app_id)
        row = await self._row(app_id, request.topic_key)
        return _topic(row, (await self._counts(app_id, [row.topic_key]))[row.topic_key])

    async def ListTopics(
        self, request: pb.ListTopicsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTopicsResponse:
        app_id = await self._scope(context, request.app_id)
        size = pagination.page_size(request.page_size)
        after = pagination.decode(request.page_token, lambda key: bool(CHOSEN_KEY.match(key)))
        async with self._db.session() as session:
            rows = list(
                await session.scalars(
                    select(tables.Topic)
                    .where(tables.Topic.app_id == app_id, tables.Topic.topic_key > after)
                    .order_by(tables.Topic.topic_key)
                    .limit(size + 1)
                )
            )
        page = rows[:size]
        counts = await self._counts(app_id, [row.topic_key for row in page])
        topics = [_topic(row, counts[row.topic_key]) for row in page]
        token = pagination.encode(page[-1].topic_key) if len(rows) > size else ""
        return pb.ListTopicsResponse(topics=topics, next_page_token=token)

    async def DeleteTopic(
        self, request: pb.DeleteTopicRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteTopicResponse:
        app_id = await self._scope(context, request.app_id)
        row = await self._row(app_id, request.topic_key)
        audit.changed(before=_topic(row, (await self._counts(app_id, [row.topic_key]))[row.topic_key]))
        await self._registry.forget(app_id, row.topic_key)  # first: no new Send reaches a half-deleted topic
        async with self._db.session.begin() as session:
            await session.execute(delete(T).where(T.app_id == app_id, T.topic_key == row.topic_key))
            await session.execute(
                delete(tables.Topic).where(tables.Topic.app_id == app_id, tables.Topic.topic_key == row.topic_key)
            )
        return pb.DeleteTopicResponse(topic_key=row.topic_key)

    async def AddSubscribers(
        self, requests: AsyncIterator[pb.AddSubscribersRequest], context: grpc.aio.ServicerContext
    ) -> pb.AddSubscribersResponse:
        added, app_id, topic_key = await self._bulk(context, requests, self._subscribe, subjects.TOPIC_SUBSCRIBED)
        count = (await self._counts(app_id, [topic_key]))[topic_key]
        return pb.AddSubscribersResponse(added_count=added, subscriber_count=count)

    async def RemoveSubscribers(
        self, requests: AsyncIterator[pb.RemoveSubscribersRequest], context: grpc.aio.ServicerContext
    ) -> pb.RemoveSubscribersResponse:
        removed, app_id, topic_key = await self._bulk(context, requests, _unsubscribe, subjects.TOPIC_UNSUBSCRIBED)
        count = (await self._counts(app_id, [topic_key]))[topic_key]
        return pb.RemoveSubscribersResponse(removed_count=removed, subscriber_count=count)

    async def _bulk(
        self, context: grpc.aio.ServicerContext, requests: AsyncIterator[Chunk], change: Change, subject: str
    ) -> tuple[int, str, str]:
        """Apply `change` to each chunk of a stream in a transaction of its own and announce the users it changed;
        returns how many it changed in all, the app and the topic (both named by the first chunk)."""
        key_app = await self._key_app(context)
        changed, app_id, topic_key = 0, "", ""
        async for request in requests:
            app_id = app_id or await self._app_id(key_app, request.app_id)
            topic_key = await self._chunk_topic(app_id, topic_key, request.topic_key)
            user_ids = _user_ids(request.user_ids)
            async with self._db.session.begin() as session:
                done = await change(session, app_id, topic_key, user_ids)
            changed += len(done)
            await self._announce(subject, app_id, topic_key, done)
        if not topic_key:
            raise InvalidArgument({"topic_key": "required in the first message"})
        return changed, app_id, topic_key

    async def _scope(self, context: grpc.aio.ServicerContext, requested: str) -> str:
        return await self._app_id(await self._key_app(context), requested)

    async def _key_app(self, context: grpc.aio.ServicerContext) -> str | None:
        """The app of the caller's key; None for an operator, who names the app in each request."""
        if operator() is not None:
            return None
        return (await self._keys.authenticate(context)).app_id

    async def _app_id(self, key_app: str | None, requested: str) -> str:
        """The app whose topics a call is about: the key's own, or the one an operator names."""
        if key_app is not None:
            if requested and requested != key_app:
                raise PermissionDenied(f"app {key_app} may not manage the topics of app '{requested[:64]}'")
            return key_app
        if not requested:
            raise InvalidArgument({"app_id": "required for an operator: the app whose topics these are"})
        await self._intake.app(requested)  # NOT_FOUND unless intake knows the app
        return requested

    async def _subscribe(self, session: AsyncSession, app_id: str, topic_key: str, user_ids: list[str]) -> list[str]:
        """Subscribe the users; returns those who were not subscribed yet."""
        rows = [{"app_id": app_id, "topic_key": topic_key, "user_id": u} for u in user_ids]
        key = ("app_id", "topic_key", "user_id")
        return await self._db.insert_rows(session, SUBSCRIBERS, rows, key=key, returning="user_id")

    async def ListSubscribers(
        self, request: pb.ListSubscribersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSubscribersResponse:
        app_id = await self._scope(context, request.app_id)
        row = await self._row(app_id, request.topic_key)
        size = pagination.page_size(request.page_size, default=1000, most=10_000)
        after = pagination.decode(request.page_token, lambda key: 0 < len(key) <= MAX_USER_ID_CHARS)
        user_ids = await subscribers(self._db, app_id, row.topic_key, after, size + 1)
        token = pagination.encode(user_ids[size - 1]) if len(user_ids) > size else ""
        return pb.ListSubscribersResponse(user_ids=user_ids[:size], next_page_token=token)

    async def _chunk_topic(self, app_id: str, known: str, given: str) -> str:
        """The topic a chunk of a bulk change is about: the first chunk names it (and it must exist)."""
        if known:
            if given and given != known:
                raise InvalidArgument({"topic_key": f"one topic per stream: this one is about '{known}'"})
            return known
        return (await self._row(app_id, given)).topic_key

    async def _row(self, app_id: str, topic_key: str) -> tables.Topic:
        if bad := _key_problem(topic_key, "topic_key"):
            raise InvalidArgument(bad)
        async with self._db.session() as session:
            row = await session.get(tables.Topic, (app_id, topic_key))
        if row is None:
            raise NotFound(f"topic '{topic_key}' not found")
        return row

    async def _counts(self, app_id: str, topic_keys: list[str]) -> dict[str, int]:
        """The subscribers of each of these topics, in one query (a page of ListTopics has up to a thousand)."""
        async with self._db.session() as session:
            rows = await session.execute(
                select(T.topic_key, func.count())
                .where(T.app_id == app_id, T.topic_key.in_(topic_keys))
                .group_by(T.topic_key)
            )
        return dict.fromkeys(topic_keys, 0) | {key: int(count) for key, count in rows}

    async def _announce(self, subject: str, app_id: str, topic_key: str, user_ids: Sequence[str]) -> None:
        if not user_ids:
            return
        event = events_pb2.TopicSubscriptionEvent(
            event_id=new_id("evt"),
            app_id=app_id,
            topic_key=topic_key,
            user_ids=user_ids,
            occur_time=to_timestamp(now()),
        )
        await self._bus.publish(subject, event.SerializeToString(), msg_id=event.event_id)


async def subscribers(db: Database, app_id: str, topic_key: str, after: str, limit: int) -> list[str]:
    """Up to `limit` of the topic's subscribers after the user id `after`, in user-id order."""
    async with db.session() as session:
        return list(
            await session.scalars(
                select(T.user_id)
                .where(T.app_id == app_id, T.topic_key == topic_key, T.user_id > after)
                .order_by(T.user_id)
                .limit(limit)
            )
        )


async def _unsubscribe(session: AsyncSession, app_id: str, topic_key: str, user_ids: list[str]) -> list[str]:
    """Unsubscribe the users; returns those who were subscribed."""
    gone = await session.scalars(
        delete(T).where(T.app_id == app_id, T.topic_key == topic_key, T.user_id.in_(user_ids)).returning(T.user_id)
    )
    return list(gone)


def _key_problem(topic_key: str, field: str) -> dict[str, str]:
    return {} if CHOSEN_KEY.match(topic_key) else {field: CHOSEN_KEY_RULE}


def _user_ids(given: Sequence[str]) -> list[str]:
    bad = {
        f"user_ids[{i}]": f"required, at most {MAX_USER_ID_CHARS} characters, no NUL"
        for i, user_id in enumerate(given)
        if not user_id or len(user_id) > MAX_USER_ID_CHARS or "\x00" in user_id
    }
    if len(given) > MAX_CHUNK:
        bad["user_ids"] = f"{len(given)} user ids; at most {MAX_CHUNK} per message"
    if bad:
        raise InvalidArgument(bad)
    return list(dict.fromkeys(given))


def _topic(row: tables.Topic, count: int) -> pb.Topic:
    return pb.Topic(
        topic_key=row.topic_key, name=row.name, subscriber_count=count, create_time=to_timestamp(row.create_time)
    )
