"""Spans of the bus: a producer span per publish, a consumer span per message, each a child of the publisher's."""

import contextlib
from collections.abc import Awaitable
from contextlib import AbstractContextManager
from typing import TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace

from herald.libs import telemetry
from herald.libs.bus.handlers import Incoming

_tracer = telemetry.tracer("herald.bus")
T = TypeVar("T")


def process_span(subject: str, parent: otel_context.Context) -> trace.Span:
    """A consumer's span for work on what arrived on `subject`, a child of the publisher's span in `parent` - or,
    where no one would record it, the publisher's span context itself (or, for a record with no trace, one made
    without the SDK: telemetry.unrecorded_span): a span's ids and sampling decision cost a consumer a few percent of
    its CPU per message for nothing."""
    publisher = trace.get_current_span(parent)
    if telemetry.unrecorded(publisher.get_span_context()):
        return publisher
    if (unrecorded := telemetry.unrecorded_span(parent)) is not None:
        return unrecorded
    return _tracer.start_span(
        f"{subject} process",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": subject,
        },
    )


def in_own_trace(incoming: Incoming, traceparent: str) -> AbstractContextManager[trace.Span]:
    """Where the work for one record of `incoming` runs: its `record_span`, ended on leaving if it is its own."""
    span = record_span(incoming, traceparent)
    return trace.use_span(span, end_on_exit=span is not incoming.span)


async def in_span(span: trace.Span, step: Awaitable[T]) -> T:
    """Await `step` with `span` current: a step of one record's work, gathered beside others' (a task starts in
    the context it was created in, not its record's)."""
    with trace.use_span(span):
        return await step


def current(span: trace.Span) -> AbstractContextManager[object]:
    """`span` made the current span, unless it is already (the span of a batch whose records are all of its
    trace): making it current costs a record a few microseconds."""
    if trace.get_current_span() is span:
        return contextlib.nullcontext()
    return trace.use_span(span)


def record_span(incoming: Incoming, traceparent: str) -> trace.Span:
    """The span one record of `incoming` is worked on in. A record that carries its own trace context
    (`publish_grouped(each_traced=True)`) from another trace than the group's gets a consumer span of its own
    there, which the caller ends; one of the group's trace, or with none, is `incoming`'s span. The trace ids are
    compared as text first: most records of a group are of its trace, and reading a traceparent costs more."""
    if len(traceparent) == 55 and traceparent[3:35] != format(incoming.span.get_span_context().trace_id, "032x"):
        parent = telemetry.extract({"traceparent": traceparent})
        if trace.get_current_span(parent).get_span_context().is_valid:
            return process_span(incoming.subject, parent)
    return incoming.span


def producing(subject: str) -> AbstractContextManager[object]:
    """Where a publish on `subject` runs: in a producer span of its own, a child of the current one. A trace
    nobody records gets no span of its own here (a child of it would not be recorded either): its context travels
    on, and a Send is spared a span's cost."""
    if not trace.get_current_span().is_recording():
        return contextlib.nullcontext()
    return _tracer.start_as_current_span(
        f"{subject} send",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.destination.name": subject,
        },
    )
