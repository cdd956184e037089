"""What the NATS bus alone shows: an outage is waited out, however long, and nothing is dead-lettered; a stream's
refusal is raised as JetStream's error. And where a grouped record's work runs. What both buses do, the in-memory
one as well, is in test_bus_contract.py."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import pytest
import sqlalchemy.exc
from nats.js.api import AckPolicy, ConsumerConfig, DiscardPolicy, StreamConfig
from nats.js.errors import APIError, NotFoundError
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from devmesh.mesh import NatsServer
from herald.internal.v1 import work_pb2
from herald.libs import subjects
from herald.libs.bus import ACK, Bus, Incoming, Outcome, in_own_trace, pubacks, tracing
from herald.libs.bus.pulling import END_GRACE, PULL_WAIT, PullRefused, PullSource

BACKOFF = (0.1, 0.1)
SUBJECT = "herald.message.test"


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[Bus]:
    server = NatsServer(tmp_path / "nats")
    await server.start()
    bus = await Bus.connect(server.url, "test", retry_backoff=BACKOFF)
    await bus.ensure_streams()
    try:
        yield bus
    finally:
        await bus.close()
        await server.stop()


async def _dead_letter(bus: Bus, consumer: str, timeout: float = 20.0) -> dict[str, str] | None:
    """The dead letter the consumer left, once there is one (None if none came within `timeout`)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            found = await bus.js.get_last_msg(subjects.DEAD_LETTERS_STREAM, subjects.unprocessed(consumer))
        except NotFoundError:
            await asyncio.sleep(0.1)
            continue
        return {**(found.headers or {}), "data": (found.data or b"").decode()}
    return None


async def test_an_outage_is_retried_past_the_bound_and_nothing_is_dead_lettered(bus: Bus) -> None:
    attempts = 0

    async def handler(batch: list[Incoming]) -> list[Outcome]:
        nonlocal attempts
        attempts += 1
        if attempts <= len(BACKOFF) + 3:
            raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("the database is down"))
        return [ACK] * len(batch)

    await bus.consume(subjects.MESSAGES_STREAM, "test-outage", SUBJECT, handler)
    await bus.publish(SUBJECT, b"fine", msg_id="fine")
    deadline = asyncio.get_running_loop().time() + 60
    while attempts <= len(BACKOFF) + 3 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    assert attempts == len(BACKOFF) + 4, "retried through the outage until it ended"
    assert await _dead_letter(bus, "test-outage", timeout=0.5) is None


async def test_a_publish_the_stream_refuses_raises_the_streams_error(bus: Bus) -> None:
    """A PubAck that carries an error (here a full stream that discards new messages) is raised as JetStream's
    APIError with its code, not taken for an ack."""
    await bus.js.add_stream(
        StreamConfig(name="TEST_FULL", subjects=["test.full"], max_msgs=1, discard=DiscardPolicy.NEW)
    )
    await bus.publish("test.full", b"first", msg_id="first")
    with pytest.raises(APIError) as raised:
        await bus.publish("test.full", b"second", msg_id="second")
    assert raised.value.err_code == 10077, "maximum messages exceeded"


def test_a_record_of_another_trace_is_worked_on_in_that_trace() -> None:
    """A record grouped with other traces' (each_traced) is routed in its own caller's trace; one of the group's
    trace, or with none, in the group's span."""
    group_trace = trace.SpanContext(0xA, 0x1, is_remote=True, trace_flags=trace.TraceFlags(1))
    incoming = Incoming(SUBJECT, b"", {}, 1, trace.NonRecordingSpan(group_trace), 1)
    other = f"00-{0xB:032x}-{0x2:016x}-01"
    with in_own_trace(incoming, other) as span:
        assert trace.get_current_span() is span and span is not incoming.span
        assert span.get_span_context().trace_id == 0xB
    same = f"00-{0xA:032x}-{0x3:016x}-01"
    for traceparent in (same, ""):
        with in_own_trace(incoming, traceparent) as span:
            assert span is incoming.span and trace.get_current_span() is incoming.span


def test_work_in_a_trace_nobody_records_stays_in_the_callers_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a collector (the SDK's sampler as telemetry.setup makes it then) and with a caller that did not
    sample, a consumer's work carries the caller's trace context on (its log lines name the caller's trace)
    instead of starting a span no one records; a sampled trace gets a span of its own."""
    sdk = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    monkeypatch.setattr(tracing, "_tracer", sdk.get_tracer("test"))
    incoming = Incoming(SUBJECT, b"", {}, 1, trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT), 1)
    with in_own_trace(incoming, f"00-{0xE:032x}-{0x6:016x}-00") as span:
        assert (span.get_span_context().trace_id, span.get_span_context().span_id) == (0xE, 0x6)
        assert not span.is_recording()
    with in_own_trace(incoming, f"00-{0xE:032x}-{0x6:016x}-01") as span:
        assert span.get_span_context().trace_id == 0xE and span.get_span_context().span_id != 0x6
        assert span.is_recording()


async def _pull_source(bus: Bus, durable: str) -> PullSource:
    config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, filter_subject=SUBJECT)
    [source] = await PullSource.open(bus.nc, bus.js, subjects.MESSAGES_STREAM, config)
    return source


async def test_messages_are_handed_over_at_once_when_an_earlier_requests_end_comes_late(bus: Bus) -> None:
    """The broker's word that a pull request expired can come after the client gave up on it and sent the next.
    nats-py's fetch took such a late 408 for its new request's end and sent another, which stayed open after the
    fetch returned with the next message, caught the message after that and held it until it expired: 4.1 s here,
    and an inbox item shown seconds late in the browser test. Here a late 408 comes while the consumer waits."""
    source = await _pull_source(bus, "test-late-end")
    handed: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()

    async def consume() -> None:
        while True:
            for delivered in await source.fetch(64):
                await delivered.settle(None)
                await handed.put((delivered.data, asyncio.get_running_loop().time()))

    consuming = asyncio.create_task(consume())
    try:
        await asyncio.sleep(0.3)
        await bus.nc.publish(source.inbox, b"", headers={"Status": "408", "Description": "Request Timeout"})
        for n in range(3):
            await asyncio.sleep(0.3)
            sent = asyncio.get_running_loop().time()
            await bus.publish(SUBJECT, f"message {n}".encode(), msg_id=f"late-end-{n}")
            data, at = await asyncio.wait_for(handed.get(), PULL_WAIT + 2 * END_GRACE)
            assert data == f"message {n}".encode()
            assert at - sent < PULL_WAIT / 2, f"message {n} handed over {at - sent:.2f} s after it was stored"
    finally:
        consuming.cancel()
        await source.close()


async def test_a_refused_pull_request_is_raised_not_taken_for_an_empty_one(bus: Bus) -> None:
    """A 409 (here: the consumer deleted while a request waits) is raised, so the Consumer waits before it asks
    again instead of asking in a tight loop."""
    source = await _pull_source(bus, "test-refused")
    fetching = asyncio.create_task(source.fetch(8))
    await asyncio.sleep(0.3)
    await bus.js.delete_consumer(subjects.MESSAGES_STREAM, "test-refused")
    with pytest.raises(PullRefused, match="409"):
        await asyncio.wait_for(fetching, PULL_WAIT)
    await source.close()


async def test_publishes_waited_on_together_fail_alone_when_their_pubacks_never_come(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subject someone listens on but no stream stores is answered by no PubAck: after the wait, that publish
    is a timeout, and the stream's publishes sent with it are stored and acked all the same."""
    monkeypatch.setattr(pubacks, "PUBACK_TIMEOUT", 0.5)
    silent = await bus.nc.subscribe("silent.subject")  # interest, so no "no responders" either
    acks = pubacks.PubAcks(bus.nc)
    await acks.open()
    payload = work_pb2.AcceptedMessage(message_id="p").SerializeToString()
    answers = await acks.publish_all([(SUBJECT, payload, {}), ("silent.subject", b"x", {}), (SUBJECT, payload, {})])
    assert isinstance(answers[1], nats.errors.TimeoutError)
    assert [b'"seq"' in a for a in (answers[0], answers[2]) if isinstance(a, bytes)] == [True, True]
    with pytest.raises(nats.errors.TimeoutError):
        await acks.publish("silent.subject", b"x", {})
    await silent.unsubscribe()
