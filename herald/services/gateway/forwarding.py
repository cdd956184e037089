"""Each Connect / gRPC-Web endpoint forwards its call over gRPC to the binary that serves it: the same request
message, the caller's credentials and deadline, the gateway's span as the parent; the binary's answer or status
back. The binaries keep every decision (authentication included), so a call means the same over either edge."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.request import RequestContext
from connectrpc.server import Endpoint
from google.protobuf.message import Message

from herald.libs import telemetry
from herald.services.gateway.errors import connect_error
from herald.services.gateway.procedures import Procedure

# The request headers a binary reads, passed on as gRPC metadata; the trace context is the gateway's own.
FORWARDED_HEADERS = ("authorization",)
IDEMPOTENCY = {
    0: IdempotencyLevel.UNKNOWN,
    1: IdempotencyLevel.NO_SIDE_EFFECTS,
    2: IdempotencyLevel.IDEMPOTENT,
}

Ctx = RequestContext[Message, Message]


def metadata(ctx: Ctx) -> tuple[tuple[str, str], ...]:
    headers = ctx.request_headers
    carrier: dict[str, str] = {}
    telemetry.inject(carrier)
    forwarded = [(name, value) for name in FORWARDED_HEADERS if (value := headers.get(name))]
    return (*forwarded, *carrier.items())


def timeout(ctx: Ctx) -> float | None:
    milliseconds = ctx.timeout_ms
    return milliseconds / 1000 if milliseconds is not None else None


def endpoint(procedure: Procedure, channel: grpc.aio.Channel) -> Endpoint[Any, Any]:
    method = procedure.method
    info = MethodInfo(
        name=method.name,
        service_name=method.containing_service.full_name,
        input=procedure.input,
        output=procedure.output,
        idempotency_level=IDEMPOTENCY.get(method.GetOptions().idempotency_level, IdempotencyLevel.UNKNOWN),
        stream_type=_stream_type(procedure),
    )
    serialize: Callable[[Message], bytes] = procedure.input.SerializeToString
    deserialize: Callable[[bytes], Message] = procedure.output.FromString
    binary = procedure.binary

    if method.client_streaming:
        call_many = channel.stream_unary(procedure.path, serialize, deserialize)

        async def client_stream(requests: AsyncIterator[Message], ctx: Ctx) -> Message:
            # Written here, one message at a time, rather than handed to grpc as an iterator it would drain in a
            # task of its own: the caller's body is read only as fast as the binary takes it.
            call = call_many(metadata=metadata(ctx), timeout=timeout(ctx))
            try:
                with contextlib.suppress(asyncio.InvalidStateError, grpc.aio.AioRpcError):
                    async for request in requests:
                        await call.write(request)
                    await call.done_writing()
                # The binary's answer; or, if it answered before the stream ended, the status it ended with.
                reply: Message = await call
                return reply
            except grpc.aio.AioRpcError as e:
                raise connect_error(e, binary, ctx) from None
            finally:
                call.cancel()

        return Endpoint.client_stream(info, client_stream)
    if method.server_streaming:
        call_stream = channel.unary_stream(procedure.path, serialize, deserialize)

        async def server_stream(request: Message, ctx: Ctx) -> AsyncIterator[Message]:
            call = call_stream(request, metadata=metadata(ctx), timeout=timeout(ctx))
            try:
                async for response in call:
                    yield response
            except grpc.aio.AioRpcError as e:
                raise connect_error(e, binary, ctx) from None
            finally:
                call.cancel()

        return Endpoint.server_stream(info, server_stream)
    call_one = channel.unary_unary(procedure.path, serialize, deserialize)

    async def unary(request: Message, ctx: Ctx) -> Message:
        try:
            reply: Message = await call_one(request, metadata=metadata(ctx), timeout=timeout(ctx))
            return reply
        except grpc.aio.AioRpcError as e:
            raise connect_error(e, binary, ctx) from None

    return Endpoint.unary(info, unary)


def _stream_type(procedure: Procedure) -> StreamType:
    method = procedure.method
    if method.client_streaming and method.server_streaming:
        return StreamType.BIDI_STREAM
    if method.client_streaming:
        return StreamType.CLIENT_STREAM
    if method.server_streaming:
        return StreamType.SERVER_STREAM
    return StreamType.UNARY


def endpoints(procedures: list[Procedure], channels: Mapping[str, grpc.aio.Channel]) -> dict[str, Any]:
    """URL path -> its endpoint (connectrpc's Endpoint subclasses, which it names only privately)."""
    return {p.path: endpoint(p, channels[p.binary]) for p in procedures}
