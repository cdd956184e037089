"""Tracing and logging set-up shared by every binary.

Spans follow one message across processes: the caller's `traceparent` comes in
through gRPC metadata, travels in NATS message headers and goes out on the
provider's HTTP request. Logs are JSON lines carrying the current trace and span id.
"""

import functools
import logging
import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import structlog
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from herald.libs.masking import mask

_provider: TracerProvider | None = None
# Whether spans go to a collector (setup).
_exporting = False
# Whether the propagators are OpenTelemetry's default ones (inject).
_DEFAULT_PROPAGATORS = (
    os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage").replace(" ", "") == "tracecontext,baggage"
)


def setup(service: str) -> None:
    """With an OTLP endpoint, spans are sampled as OTEL_TRACES_SAMPLER says (default: all). Without one nobody
    would read them, so herald records only spans of traces a caller sampled, and otherwise just carries the
    trace context on (log lines and outgoing requests keep their trace ids) - recording every span for nothing
    cost the adapters an eighth of their CPU."""
    global _provider, _exporting
    name = os.environ.get("OTEL_SERVICE_NAME") or f"herald-{service}"
    exporting = bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    _exporting = exporting
    _provider = TracerProvider(
        resource=Resource.create({"service.name": name}), sampler=None if exporting else ParentBased(ALWAYS_OFF)
    )
    if exporting:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(_provider)
    _setup_logging(name)


def shutdown() -> None:
    """Flush spans still buffered, so the last ones before exit reach the collector."""
    if _provider is not None:
        _provider.shutdown()


def unrecorded(parent: trace.SpanContext) -> bool:
    """Whether a child of `parent` would be recorded by no one: nothing is exported and the caller did not sample
    the trace. Such a child may as well be its parent's context, carried on (setup)."""
    return parent.is_valid and _no_one_records(parent)


def _no_one_records(parent: trace.SpanContext) -> bool:
    """Whether no span under `parent` would be recorded: nothing is exported and the trace, if any, is not sampled
    (herald samples nothing itself: ParentBased(ALWAYS_OFF))."""
    return not _exporting and not parent.trace_flags.sampled


_ids = RandomIdGenerator()


def unrecorded_span(parent: context.Context) -> trace.Span | None:
    """The span of work under `parent` when no one would record it (nothing is exported and the caller did not
    sample the trace), made here: the SDK's sampler makes the same non-recording span - a new span id, the caller's
    trace id or a new one, the caller's trace state - at several times the cost, a seventh of intake's CPU per
    Send. None when the span would be recorded: the SDK makes that one."""
    found = trace.get_current_span(parent).get_span_context()
    if not _no_one_records(found):
        return None
    if found.is_valid:
        trace_id, flags = found.trace_id, found.trace_flags & trace.TraceFlags.RANDOM_TRACE_ID
    else:
        trace_id, flags = _ids.generate_trace_id(), trace.TraceFlags.RANDOM_TRACE_ID
    made = trace.SpanContext(trace_id, _ids.generate_span_id(), False, trace.TraceFlags(flags), found.trace_state)
    return trace.NonRecordingSpan(made)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject(headers: MutableMapping[str, str]) -> None:
    """Put the current trace context in `headers`. With the default propagators and no baggage, what they would
    write is the traceparent (and a tracestate, if any), written here directly: every publish and provider call
    carries one, and the propagators' way cost the adapters a fortieth of their CPU."""
    if _DEFAULT_PROPAGATORS and not baggage.get_all():
        span = trace.get_current_span()
        if found := traceparent(span):
            headers["traceparent"] = found
            if state := span.get_span_context().trace_state:
                headers["tracestate"] = state.to_header()
        return
    propagate.inject(headers)


def extract(carrier: Mapping[str, str] | Iterable[tuple[str, str | bytes]]) -> context.Context:
    if not isinstance(carrier, Mapping):
        carrier = {k.lower(): v for k, v in carrier if isinstance(v, str)}
    if "traceparent" not in carrier and "baggage" not in carrier:
        return context.Context()  # what the propagators would return, for less than their cost
    return propagate.extract(carrier)


@functools.lru_cache(maxsize=256)
def traceparent(span: trace.Span) -> str:
    """The span's W3C traceparent, to find its trace again later (a receipt links to its delivery's). Written
    directly, not through the propagators: the adapters keep one for every delivery, and send one with every call -
    of a few spans, a fetched batch's, so each is written once (a span's context never changes)."""
    found = span.get_span_context()
    if not found.is_valid:
        return ""
    return f"00-{found.trace_id:032x}-{found.span_id:016x}-{found.trace_flags:02x}"


def trace_id(traceparent: str) -> str:
    """The trace id (hex) a W3C traceparent names; "" if it is not one."""
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""


def link_to(traceparent: str, attributes: Mapping[str, str]) -> None:
    """Link the current span to the span a stored `traceparent` names (none: nothing to link to)."""
    linked = trace.get_current_span(propagate.extract({"traceparent": traceparent})).get_span_context()
    if linked.is_valid:
        trace.get_current_span().add_link(linked, dict(attributes))


def _add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        event["trace_id"] = format(span.trace_id, "032x")
        event["span_id"] = format(span.span_id, "016x")
    return event


def _mask_values(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = mask(value)
    return event


def _setup_logging(service_name: str) -> None:
    """JSON lines on stderr, for structlog and for libraries that log through the standard library (Alembic)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
    ]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _mask_values,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service_name)
