"""One set of tests run against the NATS bus (a nats-server of its own) and the in-memory one
(tests/helpers/memory_bus.py): what the in-process tests of a stage rely on holds on the broker as well."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from opentelemetry import trace

from devmesh.mesh import NatsServer
from libs import subjects
from libs.bus import ACK, Bus, Incoming, MessageBus, Outcome, ScheduleChanged
from tests.helpers.memory_bus import MemoryBus

BACKOFF = (0.1, 0.1)
SUBJECT = "herald.message.contract"
# Generous: a busy two-core machine may run the broker late.
WAIT = 20.0


@pytest.fixture(params=["nats", "memory"])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MessageBus]:
    if request.param == "memory":
        async with MemoryBus(retry_backoff=BACKOFF) as memory:
            yield memory
        return
    server = NatsServer(tmp_path / "nats")
    await server.start()
    nats_bus = await Bus.connect(server.url, "contract", retry_backoff=BACKOFF)
    await nats_bus.ensure_streams()
    try:
        yield nats_bus
    finally:
        await nats_bus.close()
        await server.stop()


async def _collect(bus: MessageBus, stream: str, durable: str, subject: str) -> list[Incoming]:
    """What arrives on `subject` from now on, each acked."""
    arrived: list[Incoming] = []

    async def handler(batch: list[Incoming]) -> list[Outcome]:
        arrived.extend(batch)
        return [ACK] * len(batch)

    await bus.consume(stream, durable, subject, handler)
    return arrived


async def _until(condition: object, timeout: float = WAIT) -> None:
    """Wait until `condition()` is true (or the timeout passes: the assertion after says what was missing)."""
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)


async def test_a_repeated_message_id_is_stored_once(bus: MessageBus) -> None:
    await bus.publish(SUBJECT, b"first", msg_id="a")
    await bus.publish(SUBJECT, b"again", msg_id="a")
    await bus.publish(SUBJECT, b"other", msg_id="b")
    arrived = await _collect(bus, subjects.MESSAGES_STREAM, "contract-dedupe", SUBJECT)
    await _until(lambda: len(arrived) >= 2)
    await asyncio.sleep(0.5)
    assert [i.data for i in arrived] == [b"first", b"other"]
    assert await bus.subject_counts(subjects.MESSAGES_STREAM) == {SUBJECT: 2}


async def test_a_nak_redelivers_the_same_message_after_its_delay(bus: MessageBus) -> None:
    seen: list[tuple[int, int, float]] = []

    async def handler(batch: list[Incoming]) -> list[Outcome]:
        seen.extend((i.delivery_count, i.sequence, asyncio.get_running_loop().time()) for i in batch)
        return [0.5 if i.delivery_count == 1 else ACK for i in batch]

    await bus.consume(subjects.MESSAGES_STREAM, "contract-nak", SUBJECT, handler)
    await bus.publish(SUBJECT, b"later", msg_id="later")
    await _until(lambda: len(seen) >= 2)
    await asyncio.sleep(0.7)
    assert [(count, sequence) for count, sequence, _ in seen] == [(1, seen[0][1]), (2, seen[0][1])], "once more"
    assert seen[1][2] - seen[0][2] >= 0.45, "not before its delay"


async def test_redelivery_stops_at_max_deliver(bus: MessageBus) -> None:
    deliveries: list[int] = []

    async def handler(batch: list[Incoming]) -> list[Outcome]:
        deliveries.extend(i.delivery_count for i in batch)
        return [0.1] * len(batch)

    await bus.consume(subjects.MESSAGES_STREAM, "contract-bounded", SUBJECT, handler, max_deliver=2)
    await bus.publish(SUBJECT, b"bounded", msg_id="bounded")
    await _until(lambda: len(deliveries) >= 2)
    await asyncio.sleep(1.5)
    assert deliveries == [1, 2]


async def test_a_message_no_retry_can_handle_is_dead_lettered_after_the_bound(bus: MessageBus) -> None:
    tried: list[int] = []

    async def handler(batch: list[Incoming]) -> list[Outcome]:
        tried.extend(i.delivery_count for i in batch)
        raise ValueError("never storable")

    dead = await _collect(bus, subjects.DEAD_LETTERS_STREAM, "contract-dead", subjects.unprocessed("contract-broken"))
    await bus.consume(subjects.MESSAGES_STREAM, "contract-broken", SUBJECT, handler)
    await bus.publish(SUBJECT, b"poison", msg_id="poison")
    await _until(lambda: bool(dead))
    assert [i.data for i in dead] == [b"poison"]
    headers = dead[0].headers
    assert headers["Herald-Subject"] == SUBJECT and headers["Herald-Consumer"] == "contract-broken"
    assert headers["Herald-Reason"] == "ValueError: never storable"
    assert headers["Herald-Deliveries"] == str(len(BACKOFF) + 1)
    await asyncio.sleep(1.0)
    assert tried == [1, 2, 3], "tried once and after each retry's delay, then never again"


async def test_a_schedule_fires_at_its_time_and_a_stale_replace_is_refused(bus: MessageBus) -> None:
    subject, target = "herald.schedule.digest.contract", "herald.schedule.digested.notification"
    withdrawn = "herald.schedule.digest.withdrawn"
    fired = await _collect(bus, subjects.SCHEDULES_STREAM, "contract-fired", target)
    at = datetime.now(UTC) + timedelta(seconds=2)
    await bus.schedule(subject, b"one", at, target, replacing=0)
    with pytest.raises(ScheduleChanged):
        await bus.schedule(subject, b"two", at, target, replacing=0)  # made meanwhile by another
    first = await bus.scheduled(subject)
    assert first is not None and first.payload == b"one"
    publisher = trace.SpanContext(0xA, 0x1, is_remote=True, trace_flags=trace.TraceFlags(1))
    with trace.use_span(trace.NonRecordingSpan(publisher)):
        await bus.schedule(subject, b"one+two", at, target, replacing=first.sequence)
    with pytest.raises(ScheduleChanged):
        await bus.schedule(subject, b"one+three", at, target, replacing=first.sequence)
    await bus.schedule(withdrawn, b"never", at, target)
    waiting = await bus.scheduled_under("herald.schedule.digest.*")
    assert {s: w.payload for s, w in waiting.items()} == {subject: b"one+two", withdrawn: b"never"}
    await bus.unschedule(withdrawn)
    assert await bus.scheduled(withdrawn) is None
    await _until(lambda: bool(fired))
    assert datetime.now(UTC) >= at, "not before its time"
    await asyncio.sleep(1.0)
    assert [i.data for i in fired] == [b"one+two"], "what it last held, once; the withdrawn one never"
    assert fired[0].span.get_span_context().trace_id == 0xA, "in the trace of whoever made it"
    assert fired[0].headers["Nats-Scheduler"] == subject
    assert await bus.scheduled(subject) is None, "fired: the next write starts a new one"
    await bus.schedule(subject, b"three", at, target, replacing=0)


async def test_of_two_racing_creates_one_wins_and_updates_compare_and_set(bus: MessageBus) -> None:
    kv = await bus.key_value("contract")
    with pytest.raises(NoKeysError):
        await kv.keys()
    raced = await asyncio.gather(kv.create("k", b"a"), kv.create("k", b"b"), return_exceptions=True)
    assert sorted(type(r).__name__ for r in raced) == ["KeyWrongLastSequenceError", "int"]
    entry = await kv.get("k")
    assert entry.value == (b"a" if isinstance(raced[0], int) else b"b")
    revision = await kv.update("k", b"c", last=entry.revision)
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.update("k", b"d", last=entry.revision)  # stale
    assert (await kv.get("k")).value == b"c" and (await kv.get("k")).revision == revision
    await kv.put("other", b"x")
    assert sorted(await kv.keys()) == ["k", "other"]
    await kv.delete("k")
    with pytest.raises(KeyNotFoundError):
        await kv.get("k")
    assert await kv.keys() == ["other"]
    await kv.create("k", b"again")  # a deleted key may be created anew
    assert (await kv.get("k")).value == b"again"


async def test_a_kv_entry_expires_after_the_buckets_ttl(bus: MessageBus) -> None:
    kv = await bus.key_value("contract-ttl", ttl=1.0)
    await kv.create("k", b"a")
    await asyncio.sleep(2.5)
    with pytest.raises(KeyNotFoundError):
        await kv.get("k")
    await kv.create("k", b"b")


async def test_a_notice_reaches_whoever_listens_and_says_whether_anyone_did(bus: MessageBus) -> None:
    subject = "herald.inbox.app.user"
    assert await bus.announce_asking(subject, b"lost") is False, "nobody listens"
    async with bus.notices("herald.inbox.app.*") as heard:
        await bus.announce(subject, b"one")
        assert await bus.announce_asking(subject, b"two") is True
        got = [await asyncio.wait_for(heard.get(), WAIT) for _ in range(2)]
    assert got == [b"one", b"two"]
    assert await bus.announce_asking(subject, b"after") is False, "the listener left"
