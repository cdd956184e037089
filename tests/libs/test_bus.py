"""The bus's safety net: a message no retry can handle ends in the dead letters, whole and explained, instead of
holding its stage for ever; an outage is waited out, however long. And how records are grouped into publishes."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy.exc
from herald.v1 import events_pb2
from nats.js.api import DiscardPolicy, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError
from opentelemetry import trace

from devmesh.mesh import NatsServer
from libs import subjects
from libs.bus import ACK, Bus, Incoming, Outcome, ScheduleChanged, in_own_trace
from libs.errors import TRANSIENT

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
            found = await bus.js.get_last_msg("HERALD_DEAD_LETTERS", subjects.unprocessed(consumer))
        except NotFoundError:
            await asyncio.sleep(0.1)
            continue
        return {**(found.headers or {}), "data": (found.data or b"").decode()}
    return None


async def test_a_message_no_retry_can_handle_is_dead_lettered_whole(bus: Bus) -> None:
    seen: list[str] = []

    async def handler(batch: list[Incoming]) -> list[Outcome]:
        seen.extend(i.data.decode() for i in batch)
        raise ValueError("this one can never be stored")

    await bus.consume("HERALD_MESSAGES", "test-broken", SUBJECT, handler)
    await bus.publish(SUBJECT, b"poison", msg_id="poison")
    dead = await _dead_letter(bus, "test-broken")
    assert dead is not None, "no dead letter"
    assert dead["data"] == "poison"
    assert dead["Herald-Subject"] == SUBJECT and dead["Herald-Consumer"] == "test-broken"
    assert dead["Herald-Reason"] == "ValueError: this one can never be stored"
    assert dead["Herald-Deliveries"] == str(len(BACKOFF) + 1)
    await asyncio.sleep(1.0)
    assert seen == ["poison"] * (len(BACKOFF) + 1), "tried once and after each retry's delay, then never again"


async def test_one_bad_message_takes_none_of_its_batch_with_it(bus: Bus) -> None:
    handled: list[str] = []
    gate = asyncio.Event()

    async def handler(batch: list[Incoming]) -> list[Outcome]:
        await gate.wait()  # let the whole batch arrive, to be fetched together
        if any(i.data == b"bad" for i in batch):
            raise ValueError("bad")
        handled.extend(i.data.decode() for i in batch)
        return [ACK] * len(batch)

    for body in ("one", "bad", "two"):
        await bus.publish(SUBJECT, body.encode(), msg_id=body)
    await bus.consume("HERALD_MESSAGES", "test-batch", SUBJECT, handler)
    gate.set()
    dead = await _dead_letter(bus, "test-batch")
    assert dead is not None and dead["data"] == "bad"
    assert sorted(handled) == ["one", "two"], "the good ones are handled, once each"


async def test_an_outage_is_retried_past_the_bound_and_nothing_is_dead_lettered(bus: Bus) -> None:
    attempts = 0

    async def handler(batch: list[Incoming]) -> list[Outcome]:
        nonlocal attempts
        attempts += 1
        if attempts <= len(BACKOFF) + 3:
            raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("the database is down"))
        return [ACK] * len(batch)

    await bus.consume("HERALD_MESSAGES", "test-outage", SUBJECT, handler)
    await bus.publish(SUBJECT, b"fine", msg_id="fine")
    deadline = asyncio.get_running_loop().time() + 60
    while attempts <= len(BACKOFF) + 3 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    assert attempts == len(BACKOFF) + 4, "retried through the outage until it ended"
    assert await _dead_letter(bus, "test-outage", timeout=0.5) is None


async def _published(bus: Bus, records: int, each_traced: bool) -> list[list[str]]:
    """Publish `records` records, each from a trace of its own and in a turn of the event loop of its own, as
    concurrent Sends arrive; then the records of each message the stream holds."""

    async def one(n: int) -> None:
        for _ in range(n):
            await asyncio.sleep(0)
        own_trace = trace.SpanContext(n + 1, n + 1, is_remote=True, trace_flags=trace.TraceFlags(1))
        with trace.use_span(trace.NonRecordingSpan(own_trace)):
            message = events_pb2.AcceptedMessage(message_id=f"m{n}").SerializeToString()
            await bus.publish_grouped(SUBJECT, (message, f"m{n}"), each_traced=each_traced)

    await asyncio.gather(*(one(n) for n in range(records)))
    sub = await bus.js.pull_subscribe(SUBJECT, durable=f"test-grouped-{each_traced}", stream="HERALD_MESSAGES")
    found = await sub.fetch(records, timeout=5)
    return [[m.message_id for m in events_pb2.AcceptedBatch.FromString(msg.data).messages] for msg in found]


async def test_records_that_carry_their_own_trace_share_publishes_across_traces(bus: Bus) -> None:
    groups = await _published(bus, 50, each_traced=True)
    assert sorted(m for group in groups for m in group) == sorted(f"m{n}" for n in range(50)), "each once"
    assert len(groups) < 50, "records arriving while a publish is on its way wait to share the next"


async def test_records_of_different_traces_never_share_a_publish_otherwise(bus: Bus) -> None:
    groups = await _published(bus, 20, each_traced=False)
    assert sorted(groups) == sorted([f"m{n}"] for n in range(20))


async def test_a_publish_no_stream_takes_fails_as_an_outage_at_once(bus: Bus) -> None:
    """A subject outside every stream (a stream deleted under a running mesh) is an outage to wait out, answered
    at once rather than after the PubAck timeout."""
    started = asyncio.get_running_loop().time()
    with pytest.raises(NoStreamResponseError) as raised:
        await bus.publish("herald.nowhere", b"x", msg_id="nowhere")
    assert isinstance(raised.value, TRANSIENT)
    assert asyncio.get_running_loop().time() - started < 2.0


async def test_a_publish_is_durable_once_it_returns(bus: Bus) -> None:
    await asyncio.gather(*(bus.publish(SUBJECT, str(n).encode(), msg_id=f"d{n}") for n in range(200)))
    await bus.publish(SUBJECT, b"0", msg_id="d0")  # a repeat within the duplicate window is dropped
    info = await bus.js.stream_info("HERALD_MESSAGES")
    assert info.state.messages == 200


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


async def test_a_schedule_changes_only_by_compare_and_set_and_fires_what_it_last_held(bus: Bus) -> None:
    """Several routers add to one digest: a write based on a stale read is refused, never lost in a race."""
    subject, target = "herald.schedule.digest.test", "herald.schedule.digested.notification"
    at = datetime.now(UTC) + timedelta(seconds=2)
    await bus.schedule(subject, b"one", at, target, replacing=0)
    with pytest.raises(ScheduleChanged):
        await bus.schedule(subject, b"two", at, target, replacing=0)  # made meanwhile by another
    first = await bus.scheduled(subject)
    assert first is not None and first.payload == b"one"
    await bus.schedule(subject, b"one+two", at, target, replacing=first.sequence)
    with pytest.raises(ScheduleChanged):
        await bus.schedule(subject, b"one+three", at, target, replacing=first.sequence)
    fired = await bus.js.subscribe(target)
    message = await fired.next_msg(timeout=10)
    assert message.data == b"one+two"
    assert await bus.scheduled(subject) is None  # fired: the next write starts a new one
    await bus.schedule(subject, b"three", at, target, replacing=0)
