"""The gRPC side every binary shares: handlers that trace, count and time each call and map errors to
statuses."""

import functools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import grpc
import structlog
from opentelemetry import trace
from prometheus_client import Counter, Histogram

from herald.libs import audit, metrics, telemetry
from herald.libs.audit import AuditTrail
from herald.libs.callers import Gate
from herald.libs.errors import TRANSIENT, CannotStart, HeraldError, InvalidArgument, cannot_listen
from herald.libs.roles import RULES

log = structlog.get_logger()

_tracer = telemetry.tracer("herald.grpc")

_LABELS = ("grpc_type", "grpc_service", "grpc_method")
STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", _LABELS)
HANDLED = Counter("grpc_server_handled_total", "RPCs completed on the server, by status code.", (*_LABELS, "grpc_code"))
HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC to its answer, as the server sees it.",
    _LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# gRPC binds with SO_REUSEPORT unless told not to: a second binary started on a port in use (a stale process, a
# second `make up`) would then split the connections with the first instead of failing to start.
SERVER_OPTIONS = (("grpc.so_reuseport", 0),)


def listen(server: grpc.aio.Server, addr: str, credentials: grpc.ServerCredentials | None) -> None:
    """Listen on `addr` (TLS with `credentials`), or raise CannotStart saying why. gRPC says only that binding
    failed; a plain socket bound to the same address learns the reason from the OS."""
    try:
        if credentials is None:
            server.add_insecure_port(addr)
        else:
            server.add_secure_port(addr, credentials)
    except RuntimeError as e:
        host, _, port = addr.rpartition(":")
        try:
            resolved = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
            family, kind, proto, _, address = resolved[0]
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        except OSError as reason:
            raise cannot_listen(addr, reason) from e
        raise CannotStart(f"cannot listen on {addr}") from e


class _Undecodable:
    """Stands in for a request whose bytes are not the message the method takes."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """gRPC answers UNKNOWN when a request fails to parse; this lets the handler answer INVALID_ARGUMENT."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as e:
            return _Undecodable(e)

    return parse


async def _refuse_undecodable(request: Any, context: grpc.aio.ServicerContext, method: str) -> None:
    if isinstance(request, _Undecodable):
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {method.rsplit('/', 1)[-1]}Request message"
        )


def _decoded(request: Any) -> Any:
    return None if isinstance(request, _Undecodable) else request


async def _checked(requests: AsyncIterator[Any], method: str, change: audit.Change | None) -> AsyncIterator[Any]:
    """A client stream whose every message parsed; one that did not ends the call with INVALID_ARGUMENT. The
    first is kept for the audit record (`change`), which takes its target from it."""
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise InvalidArgument({"request": f"a streamed message is not a valid {method.rsplit('/', 1)[-1]}Request"})
        if change is not None and change.first is None:
            change.first = request
        yield request


class GenericOnly:
    """What services register on (the generated `add_*Servicer_to_server` call these two methods): each by its
    generic handler only.

    grpc.aio's server waits for its next call on one future per registered method besides the generic handlers'
    one, by an asyncio.wait over all of them for every call it takes (grpc 1.85, aio/server.pyx.pxi,
    _server_main_loop): 26 futures in intake (its 21 methods, health's and reflection's), each given a callback and
    relieved of it per call - a fifth of intake's CPU per unary Send under cProfile, too little to see without it.
    Left to the generic handlers, a method is found by its name in one dict per service, and the server waits on
    one future.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        """Not registered (the class's docstring says why): the same methods came with the generic handler."""


class TracedServer(GenericOnly):
    """What a binary's setup registers its services on: each method's handler is wrapped once, here, to continue
    the caller's trace (W3C `traceparent` metadata), pass the gate (an operator's roles, herald/libs/callers.py),
    leave its audit record if it changes state (herald/libs/audit.py) and turn HeraldError into a rich status.
    A request that does not parse is INVALID_ARGUMENT. Anything else a handler raises is a bug: it is logged with
    its trace id and answered INTERNAL, and the process stays up.

    Wrapping at registration rather than in a grpc.aio interceptor spares every call the interceptor machinery
    and a handler built afresh for it: a tenth of intake's CPU per Send.
    """

    def __init__(self, server: grpc.aio.Server, gate: Gate, trail: AuditTrail) -> None:
        super().__init__(server)
        self._gate = gate
        self._trail = trail

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        super().add_generic_rpc_handlers([_TracedGeneric(handler, self._gate, self._trail) for handler in handlers])

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        """Not registered (GenericOnly says why), but each method's series are made now: /metrics shows every
        method from the start, as dashboards and alerts expect, rather than from its first call (a method is
        wrapped, with its series, when the generic handler is first asked for it)."""
        for name, handler in handlers.items():
            _instruments(f"{service}/{name}", _kind(handler))


class _TracedGeneric(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A generic handler's methods, each wrapped the first time it is asked for."""

    def __init__(self, inner: grpc.GenericRpcHandler, gate: Gate, trail: AuditTrail) -> None:
        self._inner = inner
        self._gate = gate
        self._trail = trail
        self._traced: dict[str, grpc.RpcMethodHandler | None] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        if method not in self._traced:
            handler = self._inner.service(details)
            self._traced[method] = (
                traced(handler, method.lstrip("/"), self._gate, self._trail) if handler is not None else None
            )
        return self._traced[method]


class _Instruments:
    """One method's series, bound to its labels once (go-grpc-prometheus' names, which dashboards expect)."""

    def __init__(self, method: str, kind: str) -> None:
        service, _, name = method.rpartition("/")
        self.labels = (kind, service, name)
        self.started = metrics.child(STARTED, *self.labels)
        self.seconds = metrics.child(HANDLING_SECONDS, *self.labels)
        # OpenTelemetry's RPC conventions, on every server span of the method.
        self.attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

    def handled(self, context: grpc.aio.ServicerContext, seconds: float) -> None:
        code = context.code()
        metrics.child(HANDLED, *self.labels, code.name if isinstance(code, grpc.StatusCode) else "OK").inc()
        self.seconds.observe(seconds)


@functools.cache
def _instruments(method: str, kind: str) -> _Instruments:
    """A method's series, made once though asked for twice: when its service registers and when it is first called."""
    return _Instruments(method, kind)


def _kind(handler: grpc.RpcMethodHandler) -> str:
    return "client_stream" if handler.request_streaming else "server_stream" if handler.response_streaming else "unary"


def traced(handler: grpc.RpcMethodHandler, method: str, gate: Gate, trail: AuditTrail) -> grpc.RpcMethodHandler:
    """`handler` continuing the caller's trace, with herald's errors as statuses, counted and timed (see
    TracedServer)."""
    codec = {
        "request_deserializer": _lenient(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    instruments = _instruments(method, _kind(handler))
    rule = RULES.get(method)
    audited = rule if rule is not None and rule.audited else None  # each call leaves an audit record

    def span(context: grpc.aio.ServicerContext) -> AbstractContextManager[trace.Span]:
        """The call's server span. A status the caller caused (INVALID_ARGUMENT, NOT_FOUND, ...) leaves it
        unmarked; _abort marks it an error when herald is at fault. One no one records is made without the SDK
        (telemetry.unrecorded_span)."""
        parent = telemetry.extract(context.invocation_metadata() or ())
        if (unrecorded := telemetry.unrecorded_span(parent)) is not None:
            return trace.use_span(unrecorded)
        return _tracer.start_as_current_span(
            method,
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes=instruments.attributes,
            record_exception=False,
            set_status_on_exception=False,
        )

    def answering(inner: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]) -> Any:
        """Wrap a handler that answers once (unary or client-streaming requests)."""

        async def run(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            instruments.started.inc()
            with span(context) as current:
                change = audit.begin(audited) if audited else None
                unary = None if handler.request_streaming else request
                try:
                    await gate.admit(method, context)
                    if handler.request_streaming:
                        request = _checked(request, method, change)
                    else:
                        await _refuse_undecodable(request, context, method)
                    response = await inner(request, context)
                    if change:
                        await trail.record(method, change, unary, response, None, context)
                    return response
                except Exception as e:
                    if change:
                        await trail.record(method, change, _decoded(unary), None, e, context)
                    await _abort(context, current, method, e)
                finally:
                    instruments.handled(context, time.perf_counter() - started)

        return run

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(answering(handler.unary_unary), **codec)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(answering(handler.stream_unary), **codec)
    if handler.unary_stream:
        inner_stream = handler.unary_stream

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            instruments.started.inc()
            with span(context) as current:
                try:
                    await gate.admit(method, context)
                    await _refuse_undecodable(request, context, method)
                    async for item in inner_stream(request, context):
                        yield item
                except Exception as e:
                    await _abort(context, current, method, e)
                finally:
                    instruments.handled(context, time.perf_counter() - started)

        return grpc.unary_stream_rpc_method_handler(stream, **codec)
    return handler


async def _abort(context: grpc.aio.ServicerContext, span: trace.Span, method: str, error: Exception) -> None:
    if isinstance(error, grpc.aio.AbortError):
        raise error
    if isinstance(error, HeraldError):
        status = error.to_status()
        span.set_attribute("rpc.grpc.status_code", status.code)
        await context.abort(
            error.code,
            error.message,
            trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
        )
    span.record_exception(error)
    span.set_status(trace.Status(trace.StatusCode.ERROR))
    if isinstance(error, TRANSIENT):
        log.warning("dependency unavailable", method=method, error=repr(error))
        await context.abort(grpc.StatusCode.UNAVAILABLE, "herald cannot reach its database or message bus; retry")
    log.exception("unexpected error in handler", method=method)
    trace_id = format(span.get_span_context().trace_id, "032x")
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error; quote trace id {trace_id} to the herald team")
