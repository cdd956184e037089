"""MessageService: accept a message, check it renders for every recipient, queue it durably."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Sequence
from datetime import timedelta
from typing import Any

import grpc
from herald.v1 import common_pb2, events_pb2, message_service_pb2_grpc
from herald.v1 import message_service_pb2 as pb
from opentelemetry import trace
from prometheus_client import Counter as PromCounter
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from libs import categories, events, metrics, subjects
from libs.auth import AppIdentity, AppKeys
from libs.bus import Bus
from libs.dispatch import ESCALATION_STOPPED, Decision, DispatchLedger
from libs.errors import (
    TRANSIENT,
    FailedPrecondition,
    HeraldError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from libs.rate_limit import RateLimiter
from libs.store import Database
from libs.timeutil import from_timestamp, now
from libs.topics import TopicRegistry
from services.intake import tables
from services.intake.audience import Audience
from services.intake.common_part import CommonPart
from services.intake.message_ids import MessageIds
from services.intake.shedding import MarketingShedder
from services.intake.templates import TemplateStore
from services.intake.validation import check_shape, choose_channels, render_check

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# What one accepted message may weigh on the bus (NATS refuses payloads over 1 MiB by default).
MAX_MESSAGE_BYTES = 512 * 1024
MAX_BATCH = 500
ACCEPTED = PromCounter(
    "herald_intake_messages_accepted_total", "Messages accepted (queued), by app and category.", ("app", "category")
)
REFUSED = PromCounter(
    "herald_intake_messages_refused_total",
    "Messages refused, a SendBatch's entries one by one, by the status answered (invalid_argument, "
    "permission_denied, unavailable, unauthenticated, ...) or, for RESOURCE_EXHAUSTED, its cause: rate_limited "
    "or load_shed.",
    ("reason",),
)


class RateLimited(ResourceExhausted):
    """Over the app's own rate limit."""

    cause = "rate_limited"


# An intake_messages row, as Core inserts and returns it.
Row = dict[str, Any]


class MessageService(message_service_pb2_grpc.MessageServiceServicer):
    def __init__(
        self,
        db: Database,
        bus: Bus,
        keys: AppKeys,
        templates: TemplateStore,
        limiter: RateLimiter,
        ledger: DispatchLedger,
        ids: MessageIds,
        shedder: MarketingShedder,
        topics: TopicRegistry,
    ) -> None:
        self._topics = topics
        self._ledger = ledger
        self._ids = ids
        self._shedder = shedder
        self._db = db
        self._bus = bus
        self._keys = keys
        self._templates = templates
        self._limiter = limiter

    async def Send(self, request: pb.SendRequest, context: grpc.aio.ServicerContext) -> pb.SendResponse:
        try:
            app = await self._keys.authenticate(context)
            accepted = await self._prepare(app, request, CommonPart(app))
            if request.dry_run:
                return pb.SendResponse()
            granted, retry_after = await self._limiter.take(app.app_id, app.rate_limit_per_second, 1)
            if not granted:
                raise RateLimited(_over_limit(app, retry_after), retry_after)
            [response] = await self._accept([(accepted, request.idempotency_key)])
            trace.get_current_span().set_attribute("herald.message_id", response.message_id)  # Jaeger finds it by id
        except HeraldError as e:
            _refused(e)
            raise
        return response

    async def SendBatch(self, request: pb.SendBatchRequest, context: grpc.aio.ServicerContext) -> pb.SendBatchResponse:
        """Each entry is checked on its own; the good ones are queued together."""
        app = await self._keys.authenticate(context)
        if len(request.requests) > MAX_BATCH:
            raise InvalidArgument({"requests": f"{len(request.requests)} entries; at most {MAX_BATCH} per SendBatch"})
        reply = pb.SendBatchResponse()
        results = reply.results
        ready: list[tuple[int, events_pb2.AcceptedMessage, str]] = []
        common = CommonPart(app)
        for i, entry in enumerate(request.requests):
            result = results.add()
            try:
                accepted = await self._prepare(app, entry, common)
            except HeraldError as e:
                _refused(e)
                result.error.CopyFrom(_send_error(e))
                continue
            result.response.SetInParent()
            if not entry.dry_run:
                ready.append((i, accepted, entry.idempotency_key))
        granted, retry_after = await self._limiter.take(app.app_id, app.rate_limit_per_second, len(ready))
        for i, _, _ in ready[granted:]:
            over = RateLimited(_over_limit(app, retry_after), retry_after)
            _refused(over)
            results[i].error.CopyFrom(_send_error(over))
        ready = ready[:granted]
        responses = await self._accept([(accepted, key) for _, accepted, key in ready])
        for (i, _, _), response in zip(ready, responses, strict=True):
            results[i].response.CopyFrom(response)
        return reply

    async def CancelMessage(
        self, request: pb.CancelMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelMessageResponse:
        """Withdraw a message the router has not dispatched yet; repeating a successful cancel is harmless.

        Only a message with an idempotency key or an audience has a row; any other is the app's if its id says so
        (MessageIds). A scheduled message's schedule is withdrawn, and its deliveries are CANCELLED at once; one
        still waiting in the router's queue becomes CANCELLED when the router reaches it and finds the decision."""
        app = await self._keys.authenticate(context)
        message_id = request.message_id
        if not message_id:
            raise InvalidArgument({"message_id": "required"})
        async with self._db.session() as session:
            row = await session.get(tables.Message, message_id)
        mine = row.app_id == app.app_id if row is not None else self._ids.issued_to(message_id, app.app_id)
        if not mine:
            raise NotFound(f"message '{message_id[:64]}' not found")
        if await self._ledger.decide(message_id, Decision.CANCELLED) is not Decision.CANCELLED:
            if stopped := await self._stop_escalation(message_id):
                return pb.CancelMessageResponse(
                    message_id=message_id, already_dispatched=True, cancelled_delivery_ids=stopped
                )
            raise FailedPrecondition(
                f"message {message_id} was already dispatched to its channels and has no escalation step waiting; "
                "it can no longer be cancelled"
            )
        if row is None:
            scheduled = await self._bus.scheduled(subjects.schedule(message_id, 0))
            payloads = [(0, scheduled.payload)] if scheduled is not None else []
        else:
            if row.cancel_time is None:
                async with self._db.session.begin() as session:
                    await session.execute(
                        update(tables.Message).where(tables.Message.message_id == message_id).values(cancel_time=now())
                    )
            payloads = [(part, payload) async for part, payload in self._payloads(_as_row(row))]
        await self._bus.unschedule(subjects.schedules(message_id))
        for part, payload in payloads:
            await self._bus.publish(subjects.MESSAGE_CANCELLED, payload, msg_id=f"{message_id}.{part}.cancel")
        return pb.CancelMessageResponse(message_id=message_id)

    async def _stop_escalation(self, message_id: str) -> list[str]:
        """CANCELLED for the dispatched message's escalation steps still waiting; their delivery ids. The mark
        comes first, so a step that fires while its schedule is withdrawn is cancelled by the router instead."""
        await self._ledger.stop_escalation(message_id)
        stopped = []
        for subject, waiting in (await self._bus.scheduled_under(subjects.escalations(message_id))).items():
            step = events_pb2.DeliveryJob.FromString(waiting.payload)
            await self._bus.unschedule(subject)
            await events.publish(
                self._bus, events.event(step, common_pb2.DELIVERY_STATE_CANCELLED, reason=ESCALATION_STOPPED)
            )
            stopped.append(step.delivery_id)
        return sorted(stopped)

    async def SendAudience(
        self, requests: AsyncIterator[pb.SendAudienceRequest], context: grpc.aio.ServicerContext
    ) -> pb.SendResponse:
        """Store each chunk of the audience as a part as it arrives; queue the parts once the stream is complete."""
        app = await self._keys.authenticate(context)
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("part") != "message":
            raise InvalidArgument({"message": "the stream must start with the message"})
        header = first.message
        if header.idempotency_key and (existing := await self._keyed(app.app_id, header.idempotency_key)):
            await self._publish(existing)  # completes a first call that died before queueing; else a no-op
            return pb.SendResponse(message_id=existing["message_id"], duplicate=True)
        message_id = self._ids.new(app.app_id)
        audience = Audience(self._db, self._prepare, app, header, message_id)
        try:
            if header.recipients:
                await audience.add(list(header.recipients))
            async for request in requests:
                if request.WhichOneof("part") != "recipients":
                    raise InvalidArgument({"message": "the message may come only once, first"})
                await audience.add(list(request.recipients.recipients))
            if audience.parts == 0:
                raise InvalidArgument({"recipients": "at least one recipient is required"})
            if header.dry_run:
                return pb.SendResponse()
            granted, retry_after = await self._limiter.take(app.app_id, app.rate_limit_per_second, 1)
            if not granted:
                raise RateLimited(_over_limit(app, retry_after), retry_after)
            row = _row(audience.first, b"", header.idempotency_key) | {"parts": audience.parts}
            if row["idempotency_key"] is None:
                await self._store(row)
            elif (existing := await self._claim(row)) is not None:
                await self._publish(existing)
                return pb.SendResponse(message_id=existing["message_id"], duplicate=True)
            audience.complete = True
        finally:
            if not audience.complete:
                await audience.discard()
        await self._publish(row)
        return pb.SendResponse(message_id=message_id)

    async def _prepare(
        self, app: AppIdentity, request: pb.SendRequest, common: CommonPart
    ) -> events_pb2.AcceptedMessage:
        """Everything that can refuse a Send, before anything is stored; then the message as it is queued."""
        check_shape(request)
        if request.topic and not await self._topics.exists(app.app_id, request.topic):
            raise NotFound(f"topic '{request.topic}' not found (TopicService.CreateTopic makes one)")
        template = await self._templates.latest_for_sending(request.template_id)
        app.check_category(template.category)
        self._shedder.check(template.category)
        chosen = choose_channels(request, template, app)
        render_check(request, template, chosen)
        accepted = common.message(template)
        accepted.message_id = self._ids.new(app.app_id)
        accepted.recipients.MergeFrom(request.recipients)
        accepted.variables.MergeFrom(request.variables)
        accepted.channels.extend(chosen)
        accepted.channels_named = bool(request.channels)
        accepted.topic = request.topic
        for when in ("send_at", "expire_at"):
            if request.HasField(when):
                getattr(accepted, when).CopyFrom(getattr(request, when))
        if (size := accepted.ByteSize()) > MAX_MESSAGE_BYTES:
            raise InvalidArgument(
                {"recipients": f"the message is {size} bytes with its template; at most {MAX_MESSAGE_BYTES}: split it"}
            )
        return accepted

    async def _accept(self, items: list[tuple[events_pb2.AcceptedMessage, str]]) -> list[pb.SendResponse]:
        """Queue the messages. Only one with an idempotency key is stored first, to claim the key in a row of its
        own; the others' durable record is JetStream. One whose key was used already is answered with that
        message, queued again."""
        responses: list[pb.SendResponse] = []
        fresh: list[tuple[int, bytes, str]] = []
        again: list[Row] = []
        for accepted, key in items:
            payload = accepted.SerializeToString()
            if key and (existing := await self._claim(_row(accepted, payload, key))) is not None:
                again.append(existing)
                responses.append(pb.SendResponse(message_id=existing["message_id"], duplicate=True))
            else:
                fresh.append((accepted.template.category, payload, accepted.message_id))
                responses.append(pb.SendResponse(message_id=accepted.message_id))
        await _all([self._queue(fresh), *(self._publish(row) for row in again)])
        taken = Counter((accepted.app_id, accepted.template.category) for accepted, _ in items)
        for (app_id, category), count in taken.items():
            metrics.child(ACCEPTED, app_id, categories.name(category)).inc(count)
        return responses

    async def _store(self, row: Row) -> None:
        try:
            async with self._db.session.begin() as session:
                await session.execute(insert(tables.Message), [row])
        except TRANSIENT as e:
            raise Unavailable("could not store the message; it was not accepted, retry") from e

    async def _queue(self, messages: Sequence[tuple[int, bytes, str]]) -> None:
        """Publish one call's new messages (category, payload, message id): together, they travel as a few
        AcceptedBatches (Bus.publish_grouped), a SendBatch of 100 as one.

        A lone message (a Send's) carries its call's trace (CommonPart), so it shares a publish with concurrent
        Sends'. A SendBatch's messages keep a publish of their own: the router admits a fetched batch whole, and
        batches merged across calls would let a marketing flood hold more of a shared router at once, in front
        of a critical message (p99 behind a flood 60 -> 240 ms when tried)."""
        together: dict[int, list[tuple[bytes, str]]] = {}
        for category, payload, message_id in messages:
            together.setdefault(category, []).append((payload, message_id))
        alone = len(messages) == 1
        try:
            await _all(
                [
                    self._bus.publish_grouped(subjects.message_accepted(c), *records, each_traced=alone)
                    for c, records in together.items()
                ]
            )
        except TRANSIENT as e:
            raise Unavailable(
                "could not queue the message; retry (with the same idempotency key, if it had one)"
            ) from e

    async def _claim(self, row: Row) -> Row | None:
        """Insert a keyed row; if the key was used within IDEMPOTENCY_WINDOW (here or on another replica),
        return that first row instead. An older use of the key is released, so the key works again."""
        for _ in range(3):
            try:
                async with self._db.session.begin() as session:
                    await session.execute(insert(tables.Message), [row])
                return None
            except IntegrityError:
                pass
            key = (tables.Message.app_id == row["app_id"]) & (tables.Message.idempotency_key == row["idempotency_key"])
            async with self._db.session.begin() as session:
                existing = await session.scalar(select(tables.Message).where(key))
                if existing is not None and existing.create_time > now() - IDEMPOTENCY_WINDOW:
                    return _as_row(existing)
                if existing is not None:  # a statement, not the ORM's flush: the purge may delete the row meanwhile
                    await session.execute(
                        update(tables.Message).where(key).values(idempotency_key=None),
                        execution_options={"synchronize_session": False},
                    )
        raise Unavailable("the idempotency key is being claimed concurrently; retry")

    async def _publish(self, row: Row) -> None:
        """Queue a stored message again (found by its idempotency key), or a large audience's parts one by one.

        UNAVAILABLE means "not queued": the bus refuses to publish while it is reconnecting (libs/bus.py)."""
        try:
            async for part, payload in self._payloads(row):
                msg_id = row["message_id"] if not row["parts"] else f"{row['message_id']}.{part}"
                category = events_pb2.AcceptedMessage.FromString(payload).template.category
                lane = subjects.message_parts if row["parts"] else subjects.message_accepted
                await self._bus.publish_grouped(lane(category), (payload, msg_id), each_traced=True)
        except TRANSIENT as e:
            raise Unavailable("could not queue the message; retry with the same idempotency key") from e

    async def _payloads(self, row: Row) -> AsyncIterator[tuple[int, bytes]]:
        """The message as it travels: one payload, or a large audience's parts read back a few at a time."""
        if not row["parts"]:
            yield 0, row["payload"]
            return
        async with self._db.session() as session:
            parts = await session.stream_scalars(
                select(tables.MessagePart)
                .where(tables.MessagePart.message_id == row["message_id"])
                .order_by(tables.MessagePart.part)
                .execution_options(yield_per=20)
            )
            async for part in parts:
                yield part.part, part.payload

    async def _keyed(self, app_id: str, key: str) -> Row | None:
        async with self._db.session() as session:
            row = await session.scalar(
                select(tables.Message).where(tables.Message.app_id == app_id, tables.Message.idempotency_key == key)
            )
        return _as_row(row) if row is not None and row.create_time > now() - IDEMPOTENCY_WINDOW else None


def _refused(error: HeraldError) -> None:
    """Count a message refused, by its cause or the status its caller got (bounded: a dozen codes)."""
    REFUSED.labels(error.cause or error.code.name.lower()).inc()


def _send_error(error: HeraldError) -> pb.SendError:
    """A SendBatch entry's refusal, saying what the status of a Send refused alike would: the fields at fault, or
    when to retry."""
    refusal = pb.SendError(code=error.code.value[0], message=error.message)
    if isinstance(error, InvalidArgument):
        refusal.fields.extend(error.fields)
    if isinstance(error, ResourceExhausted):
        refusal.retry_delay.FromNanoseconds(int(error.retry_after_seconds * 1e9))
    return refusal


async def _all(steps: list[Coroutine[Any, Any, None]]) -> None:
    """Await every step, together; a single one (a Send's) directly, spared gather's tasks."""
    if len(steps) == 1:
        await steps[0]
    else:
        await asyncio.gather(*steps)


def _over_limit(app: AppIdentity, retry_after: float) -> str:
    return (
        f"app {app.app_id} is over its rate limit of {app.rate_limit_per_second:g} messages/s; "
        f"retry in {retry_after:.2f}s"
    )


def _row(accepted: events_pb2.AcceptedMessage, payload: bytes, key: str) -> Row:
    """The message's intake_messages row (a keyed message's, or an audience's with an empty payload)."""
    return {
        "message_id": accepted.message_id,
        "app_id": accepted.app_id,
        "idempotency_key": key or None,
        "template_id": accepted.template.template_id,
        "template_version": accepted.template.version,
        "payload": payload,
        "create_time": now(),
        "send_at": from_timestamp(accepted.send_at),
        "cancel_time": None,
        "parts": 0,
    }


def _as_row(message: tables.Message) -> Row:
    return {column.key: getattr(message, column.key) for column in tables.Message.__table__.columns}
