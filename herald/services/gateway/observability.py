"""The gateway's golden signals and its span of each call. The span is the root of the call's trace unless the
caller sent a `traceparent`; the binary's span continues it (herald/services/gateway/forwarding.py passes it on)."""

import time
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from opentelemetry import context, trace
from prometheus_client import Counter, Gauge, Histogram

from herald.libs import telemetry
from herald.libs.metrics import child

_LABELS = ("procedure",)
STARTED = Counter("herald_gateway_requests_started_total", "Calls the gateway began to serve.", _LABELS)
HANDLED = Counter(
    "herald_gateway_requests_handled_total", "Calls the gateway answered, by Connect code.", (*_LABELS, "code")
)
IN_FLIGHT = Gauge("herald_gateway_requests_in_flight", "Calls being served now (live subscriptions included).")
HANDLING_SECONDS = Histogram(
    "herald_gateway_handling_seconds",
    "Time from the start of a call to its answer (a stream: to its end), as the gateway sees it.",
    _LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

tracer = telemetry.tracer("herald.gateway")

Started = tuple[trace.Span, object, float, str]


class Observer:
    """A Connect metadata interceptor: it sees each call begin, before its body is read, and end with the error
    it ended with, whether the gateway or the binary raised it."""

    async def on_start(self, ctx: RequestContext[Any, Any]) -> Started:
        procedure = f"{ctx.method.service_name}/{ctx.method.name}"
        parent = telemetry.extract(dict(ctx.request_headers.items()))
        span = telemetry.unrecorded_span(parent) or tracer.start_span(
            procedure,
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={
                "rpc.system": "connect_rpc",
                "rpc.service": ctx.method.service_name,
                "rpc.method": ctx.method.name,
            },
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        child(STARTED, procedure).inc()
        IN_FLIGHT.inc()
        return span, token, time.perf_counter(), procedure

    async def on_end(self, started: Started, ctx: RequestContext[Any, Any], error: Exception | None) -> None:
        span, token, began, procedure = started
        code = "ok" if error is None else (error.code if isinstance(error, ConnectError) else Code.UNKNOWN).value
        child(HANDLED, procedure, code).inc()
        child(HANDLING_SECONDS, procedure).observe(time.perf_counter() - began)
        IN_FLIGHT.dec()
        span.set_attribute("rpc.connect_rpc.error_code", code)
        if error is not None and code not in ("not_found", "invalid_argument", "already_exists", "unauthenticated"):
            span.set_status(trace.Status(trace.StatusCode.ERROR, code))
        span.end()
        context.detach(token)  # type: ignore[arg-type]
