"""What goes out with a publish or a provider call: the trace context, as OpenTelemetry's propagators write it."""

import pytest
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from herald.libs import telemetry


@pytest.mark.parametrize("sampled", [True, False])
@pytest.mark.parametrize("state", [None, TraceState([("vendor", "value")])])
@pytest.mark.parametrize("carried", [{}, {"tenant": "blue"}])
def test_inject_writes_what_the_propagators_write(
    sampled: bool, state: TraceState | None, carried: dict[str, str]
) -> None:
    span = NonRecordingSpan(SpanContext(0xABC, 0xDEF, True, TraceFlags(int(sampled)), state))
    with_baggage = context.get_current()
    for key, value in carried.items():
        with_baggage = baggage.set_baggage(key, value, with_baggage)
    token = context.attach(trace.set_span_in_context(span, with_baggage))
    try:
        ours: dict[str, str] = {}
        theirs: dict[str, str] = {}
        telemetry.inject(ours)
        propagate.inject(theirs)
    finally:
        context.detach(token)
    assert ours == theirs
    assert ours["traceparent"] == f"00-{0xABC:032x}-{0xDEF:016x}-0{int(sampled)}"


def test_inject_writes_nothing_outside_a_trace() -> None:
    headers: dict[str, str] = {}
    telemetry.inject(headers)
    assert headers == {}


@pytest.mark.parametrize("state", [None, TraceState([("vendor", "value")])])
@pytest.mark.parametrize("flags", [TraceFlags.DEFAULT, TraceFlags.RANDOM_TRACE_ID])
def test_a_span_no_one_records_is_the_one_the_sdk_would_make(state: TraceState | None, flags: int) -> None:
    """Nothing exported: a call whose caller did not sample its trace (or sent none) gets the non-recording span
    the SDK's sampler would give it - the caller's trace continued, or a new one - and a sampled caller's call is
    left to the SDK, which records it."""
    sdk = TracerProvider(sampler=ParentBased(ALWAYS_OFF)).get_tracer("test")
    unsampled = trace.set_span_in_context(NonRecordingSpan(SpanContext(0xABC, 0xDEF, True, TraceFlags(flags), state)))
    for parent in (unsampled, context.Context()):
        ours = telemetry.unrecorded_span(parent)
        theirs = sdk.start_span("call", context=parent)
        assert ours is not None and not ours.is_recording() and not theirs.is_recording()
        made, expected = ours.get_span_context(), theirs.get_span_context()
        assert made.is_valid and not made.is_remote and made.trace_flags == expected.trace_flags
        assert made.trace_state == expected.trace_state and made.span_id not in (0xDEF, expected.span_id)
        assert (made.trace_id == 0xABC) == (parent is unsampled) == (expected.trace_id == 0xABC)
    sampled = trace.set_span_in_context(NonRecordingSpan(SpanContext(0xABC, 0xDEF, True, TraceFlags(1))))
    assert telemetry.unrecorded_span(sampled) is None
