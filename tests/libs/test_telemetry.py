"""What goes out with a publish or a provider call: the trace context, as OpenTelemetry's propagators write it."""

import pytest
from opentelemetry import baggage, context, propagate, trace
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
