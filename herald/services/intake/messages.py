"""MessageService: the gRPC calls that send and cancel messages. What a Send must pass and becomes is
acceptance.py's; how it is stored and queued, accepted_queue.py's; what a cancel withdraws, cancellation.py's."""

from collections.abc import AsyncIterator

import grpc
from herald.v1 import message_service_pb2 as pb
from herald.v1 import message_service_pb2_grpc
from opentelemetry import trace
from prometheus_client import Counter as PromCounter

from herald.internal.v1 import work_pb2
from herald.libs.auth import AppKeys
from herald.libs.bus import Bus
from herald.libs.dispatch import DispatchLedger
from herald.libs.errors import HeraldError, InvalidArgument, ResourceExhausted
from herald.libs.rate_limit import RateLimiter
from herald.libs.store import Database
from herald.libs.topics import TopicRegistry
from herald.services.intake.acceptance import Acceptance
from herald.services.intake.accepted_queue import AcceptedQueue, row
from herald.services.intake.audience import Audience
from herald.services.intake.cancellation import Cancellation
from herald.services.intake.common_part import CommonPart
from herald.services.intake.message_ids import MessageIds
from herald.services.intake.shedding import MarketingShedder
from herald.services.intake.templates import TemplateStore

MAX_BATCH = 500
REFUSED = PromCounter(
    "herald_intake_messages_refused_total",
    "Messages refused, a SendBatch's entries one by one, by the status answered (invalid_argument, "
    "permission_denied, unavailable, unauthenticated, ...) or, for RESOURCE_EXHAUSTED, its cause: rate_limited "
    "or load_shed.",
    ("reason",),
)


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
        self._db = db
        self._keys = keys
        self._ids = ids
        self._acceptance = Acceptance(templates, topics, shedder, ids, limiter)
        self._queue = AcceptedQueue(db, bus)
        self._cancellation = Cancellation(db, bus, ledger, ids, self._queue)

    async def Send(self, request: pb.SendRequest, context: grpc.aio.ServicerContext) -> pb.SendResponse:
        try:
            app = await self._keys.authenticate(context)
            accepted = await self._acceptance.prepare(app, request, CommonPart(app))
            if request.dry_run:
                return pb.SendResponse()
            _, over = await self._acceptance.admit(app, 1)
            if over is not None:
                raise over
            [response] = await self._queue.accept([(accepted, request.idempotency_key)])
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
        ready: list[tuple[int, work_pb2.AcceptedMessage, str]] = []
        common = CommonPart(app)
        for i, entry in enumerate(request.requests):
            result = results.add()
            try:
                accepted = await self._acceptance.prepare(app, entry, common)
            except HeraldError as e:
                _refused(e)
                result.error.CopyFrom(_send_error(e))
                continue
            result.response.SetInParent()
            if not entry.dry_run:
                ready.append((i, accepted, entry.idempotency_key))
        granted, over = await self._acceptance.admit(app, len(ready))
        if over is not None:
            for i, _, _ in ready[granted:]:
                _refused(over)
                results[i].error.CopyFrom(_send_error(over))
        ready = ready[:granted]
        responses = await self._queue.accept([(accepted, key) for _, accepted, key in ready])
        for (i, _, _), response in zip(ready, responses, strict=True):
            results[i].response.CopyFrom(response)
        return reply

    async def CancelMessage(
        self, request: pb.CancelMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelMessageResponse:
        """Withdraw a message the router has not dispatched yet (cancellation.py); repeating a successful cancel is
        harmless."""
        app = await self._keys.authenticate(context)
        if not request.message_id:
            raise InvalidArgument({"message_id": "required"})
        return await self._cancellation.cancel(app.app_id, request.message_id)

    async def SendAudience(
        self, requests: AsyncIterator[pb.SendAudienceRequest], context: grpc.aio.ServicerContext
    ) -> pb.SendResponse:
        """Store each chunk of the audience as a part as it arrives; queue the parts once the stream is complete."""
        app = await self._keys.authenticate(context)
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("part") != "message":
            raise InvalidArgument({"message": "the stream must start with the message"})
        header = first.message
        if header.idempotency_key and (existing := await self._queue.keyed(app.app_id, header.idempotency_key)):
            await self._queue.publish(existing)  # completes a first call that died before queueing; else a no-op
            return pb.SendResponse(message_id=existing["message_id"], duplicate=True)
        message_id = self._ids.new(app.app_id)
        audience = Audience(self._db, self._acceptance.prepare, app, header, message_id)
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
            _, over = await self._acceptance.admit(app, 1)
            if over is not None:
                raise over
            first_row = row(audience.first, b"", header.idempotency_key) | {"parts": audience.parts}
            if first_row["idempotency_key"] is None:
                await self._queue.store(first_row)
            elif (existing := await self._queue.claim(first_row)) is not None:
                await self._queue.publish(existing)
                return pb.SendResponse(message_id=existing["message_id"], duplicate=True)
            audience.complete = True
        finally:
            if not audience.complete:
                await audience.discard()
        await self._queue.publish(first_row)
        return pb.SendResponse(message_id=message_id)


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
