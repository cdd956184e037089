"""One set of tests run against the NATS bus (a nats-server of its own) and the in-memory one
(tests/helpers/memory_bus.py): what the in-process tests of a stage rely on holds on the broker as well. The bus's
safety net among them: a message no retry can handle ends in the dead letters, whole and explained, instead of
holding its stage for ever. And how records are grouped into publishes."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError, NoStreamResponseError
from opentelemetry import trace

from devmesh.mesh import NatsServer
from herald.internal.v1 import work_pb2
from herald.libs import subjects
from herald.libs.bus import ACK, Bus, Incoming, MessageBus, Outcome, ScheduleChanged
from herald.libs.bus.grouping import MAX_GROUP_RECORDS, join_groups
from herald.libs.errors import TRANSIENT
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


async def test_a_message_gets_its_retries_however_often_it_was_redelivered_on_request(bus: MessageBus) -> None:
    """Naks a handler asks for (a group of delivery jobs waiting for its jobs' retries) are not failures: a message
    that breaks after more of them than the retries allow still gets every retry before the dead letters."""
    waits = len(BACKOFF) + 1
    tried: list[int] = []

    async def handler(batch: list[Incoming]) -> list[Outcome]:
        tried.extend(i.delivery_count for i in batch)
        if batch[0].delivery_count <= waits:
            return [0.1] * len(batch)
        raise ValueError("broke after waiting")

    dead = await _collect(bus, subjects.DEAD_LETTERS_STREAM, "contract-dead", subjects.unprocessed("contract-waits"))
    await bus.consume(subjects.MESSAGES_STREAM, "contract-waits", SUBJECT, handler)
    await bus.publish(SUBJECT, b"waited", msg_id="waited")
    await _until(lambda: bool(dead))
    await asyncio.sleep(1.0)
    assert tried == list(range(1, waits + len(BACKOFF) + 2)), "every wait, the first failure and each retry"
    assert dead[0].headers["Herald-Deliveries"] == str(waits + len(BACKOFF) + 1)


async def test_one_bad_message_takes_none_of_its_batch_with_it(bus: MessageBus) -> None:
    handled: list[str] = []
    gate = asyncio.Event()

    async def handler(batch: list[Incoming]) -> list[Outcome]:
        await gate.wait()  # let the whole batch arrive, to be fetched together
        if any(i.data == b"bad" for i in batch):
            raise ValueError("bad")
        handled.extend(i.data.decode() for i in batch)
        return [ACK] * len(batch)

    dead = await _collect(bus, subjects.DEAD_LETTERS_STREAM, "contract-dead", subjects.unprocessed("contract-batch"))
    for body in ("one", "bad", "two"):
        await bus.publish(SUBJECT, body.encode(), msg_id=body)
    await bus.consume(subjects.MESSAGES_STREAM, "contract-batch", SUBJECT, handler)
    gate.set()
    await _until(lambda: bool(dead))
    assert [i.data for i in dead] == [b"bad"]
    assert sorted(handled) == ["one", "two"], "the good ones are handled, once each"


async def _published(bus: MessageBus, records: int, each_traced: bool) -> list[list[str]]:
    """Publish `records` records, each from a trace of its own and in a turn of the event loop of its own, as
    concurrent Sends arrive; then the records of each message the stream holds."""

    async def one(n: int) -> None:
        for _ in range(n):
            await asyncio.sleep(0)
        own_trace = trace.SpanContext(n + 1, n + 1, is_remote=True, trace_flags=trace.TraceFlags(1))
        with trace.use_span(trace.NonRecordingSpan(own_trace)):
            message = work_pb2.AcceptedMessage(message_id=f"m{n}").SerializeToString()
            await bus.publish_grouped(SUBJECT, (message, f"m{n}"), each_traced=each_traced)

    await asyncio.gather(*(one(n) for n in range(records)))
    stored = sum((await bus.subject_counts(subjects.MESSAGES_STREAM)).values())
    found = await _collect(bus, subjects.MESSAGES_STREAM, f"contract-grouped-{each_traced}", SUBJECT)
    await _until(lambda: len(found) >= stored)
    return [[m.message_id for m in work_pb2.AcceptedBatch.FromString(i.data).messages] for i in found]


async def test_records_that_carry_their_own_trace_share_publishes_across_traces(bus: MessageBus) -> None:
    groups = await _published(bus, 50, each_traced=True)
    assert sorted(m for group in groups for m in group) == sorted(f"m{n}" for n in range(50)), "each once"
    assert len(groups) < 50, "records arriving while a publish is on its way wait to share the next"


async def test_records_of_different_traces_never_share_a_publish_otherwise(bus: MessageBus) -> None:
    groups = await _published(bus, 20, each_traced=False)
    assert sorted(groups) == sorted([f"m{n}"] for n in range(20))


async def _lingering(bus: MessageBus, records: int, spacing: float, linger: float) -> list[list[str]]:
    """Publish `records` records one at a time, `spacing` seconds apart, each with `linger` (as Sends arrive one
    per call); then the records of each message the stream holds."""

    async def one(n: int) -> None:
        await asyncio.sleep(n * spacing)
        message = work_pb2.AcceptedMessage(message_id=f"m{n}").SerializeToString()
        await bus.publish_grouped(SUBJECT, (message, f"m{n}"), each_traced=True, linger=linger)

    await asyncio.gather(*(one(n) for n in range(records)))
    found = await _collect(bus, subjects.MESSAGES_STREAM, "contract-lingering", SUBJECT)
    await _until(lambda: sum(len(work_pb2.AcceptedBatch.FromString(i.data).messages) for i in found) >= records)
    return [[m.message_id for m in work_pb2.AcceptedBatch.FromString(i.data).messages] for i in found]


async def test_records_that_trickle_in_while_the_subject_is_busy_wait_to_share_a_publish(bus: MessageBus) -> None:
    """Forty records 2 ms apart, lingering 0.2 s: a handful of publishes, not one per record."""
    groups = await _lingering(bus, 40, 0.002, 0.2)
    assert sorted(m for group in groups for m in group) == sorted(f"m{n}" for n in range(40)), "each once"
    assert len(groups) <= 10, [len(g) for g in groups]


async def test_a_lone_record_on_a_quiet_subject_does_not_linger(bus: MessageBus) -> None:
    started = asyncio.get_running_loop().time()
    groups = await _lingering(bus, 1, 0, 30.0)
    assert groups == [["m0"]]
    assert asyncio.get_running_loop().time() - started < WAIT, "published at once, not after its linger"


async def test_a_large_group_is_split_so_a_consumers_batch_stays_small_in_work(bus: MessageBus) -> None:
    """A page of a campaign's events in one call: at most MAX_GROUP_RECORDS a message, every record once."""
    records = [(work_pb2.AcceptedMessage(message_id=f"m{n}").SerializeToString(), f"m{n}") for n in range(250)]
    await bus.publish_grouped(SUBJECT, *records, each_traced=True)
    found = await _collect(bus, subjects.MESSAGES_STREAM, "contract-split", SUBJECT)
    await _until(lambda: sum(len(work_pb2.AcceptedBatch.FromString(i.data).messages) for i in found) >= 250)
    sizes = [len(work_pb2.AcceptedBatch.FromString(i.data).messages) for i in found]
    assert sum(sizes) == 250 and max(sizes) <= MAX_GROUP_RECORDS, sizes


async def test_records_joined_together_reach_each_subject_and_are_durable_for_every_waiter(bus: MessageBus) -> None:
    """A batch's records on two subjects, joined in one call (the router's states of a batch): each subject's
    consumer gets its own, every record once, and the one result may be awaited by several (an outcome's
    follow-ups wait on its event)."""
    other = f"{SUBJECT}.other"
    records = [
        (SUBJECT if n % 2 else other, work_pb2.AcceptedMessage(message_id=f"j{n}").SerializeToString(), f"j{n}")
        for n in range(10)
    ]
    joined = join_groups(bus, records, each_traced=True)
    await asyncio.gather(joined, joined)
    here = await _collect(bus, subjects.MESSAGES_STREAM, "contract-joined", SUBJECT)
    there = await _collect(bus, subjects.MESSAGES_STREAM, "contract-joined-other", other)

    def ids(found: list[Incoming]) -> list[str]:
        return sorted(m.message_id for i in found for m in work_pb2.AcceptedBatch.FromString(i.data).messages)

    await _until(lambda: len(ids(here)) >= 5 and len(ids(there)) >= 5)
    assert ids(here) == [f"j{n}" for n in (1, 3, 5, 7, 9)]
    assert ids(there) == [f"j{n}" for n in (0, 2, 4, 6, 8)]


async def test_a_consumer_counting_records_is_handed_at_most_its_batch_of_records(bus: MessageBus) -> None:
    """Grouped messages hold many records: a consumer whose batch counts records (the adapters': the calls in
    flight at once) is never handed more than a batch of them, or one message that holds more. It fetches as many
    messages as the last ones' records per message let a batch fill: one to begin with (a single), eight after it
    (the other seven singles and a group of 8, handed over in two batches), then four (the last group)."""
    for n in range(8):
        await bus.publish(SUBJECT, work_pb2.AcceptedBatch().SerializeToString(), msg_id=f"s{n}")
    for n in range(2):
        group = [(work_pb2.AcceptedMessage(message_id=f"g{n}.{k}").SerializeToString(), f"g{n}.{k}") for k in range(8)]
        await bus.publish_grouped(SUBJECT, *group, each_traced=True)
    batches: list[int] = []

    async def handler(batch: list[Incoming]) -> list[Outcome]:
        batches.append(sum(len(work_pb2.AcceptedBatch.FromString(i.data).messages) or 1 for i in batch))
        return [ACK] * len(batch)

    await bus.consume(subjects.MESSAGES_STREAM, "contract-records", SUBJECT, handler, batch=8, of_records=True)
    await _until(lambda: sum(batches) >= 24)
    assert batches == [1, 7, 8, 8]


async def test_with_two_batches_in_hand_one_that_waits_does_not_hold_up_the_next(bus: MessageBus) -> None:
    """A batch in hand until its slowest call returns (the adapters') leaves room for the next batch: the handler
    gets the second message while the first is still in hand, and both are acked once done, not delivered again."""
    for n in range(2):
        await bus.publish(SUBJECT, str(n).encode(), msg_id=f"h{n}")
    second_came = asyncio.Event()
    first_in_hand = overlapped = False
    handed: list[bytes] = []

    async def handler(batch: list[Incoming]) -> list[Outcome]:
        nonlocal first_in_hand, overlapped
        handed.extend(i.data for i in batch)
        if batch[0].data == b"0":
            first_in_hand = True
            with contextlib.suppress(TimeoutError):  # with one batch in hand, the second comes only after
                await asyncio.wait_for(second_came.wait(), WAIT / 2)
            first_in_hand = False
        else:
            overlapped = first_in_hand
            second_came.set()
        return [ACK] * len(batch)

    await bus.consume(subjects.MESSAGES_STREAM, "contract-in-hand", SUBJECT, handler, batch=1, in_hand=2)
    await _until(lambda: len(handed) >= 2)
    assert overlapped, "the second message waited until the first was done"
    await asyncio.sleep(0.5)  # a message not acked would come back; none does
    assert sorted(handed) == [b"0", b"1"]
    assert await bus.consumer_lag() == {"contract-in-hand": (0, 0)}


async def test_a_publish_no_stream_takes_fails_as_an_outage_at_once(bus: MessageBus) -> None:
    """A subject outside every stream (a stream deleted under a running mesh) is an outage to wait out, answered
    at once rather than after the PubAck timeout."""
    started = asyncio.get_running_loop().time()
    with pytest.raises(NoStreamResponseError) as raised:
        await bus.publish("herald.nowhere", b"x", msg_id="nowhere")
    assert isinstance(raised.value, TRANSIENT)
    assert asyncio.get_running_loop().time() - started < 2.0


async def test_a_publish_is_durable_once_it_returns(bus: MessageBus) -> None:
    await asyncio.gather(*(bus.publish(SUBJECT, str(n).encode(), msg_id=f"d{n}") for n in range(200)))
    await bus.publish(SUBJECT, b"0", msg_id="d0")  # a repeat within the duplicate window is dropped
    assert await bus.subject_counts(subjects.MESSAGES_STREAM) == {SUBJECT: 200}


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


async def test_creates_written_together_each_win_or_lose_on_their_own(bus: MessageBus) -> None:
    kv = await bus.key_value("contract-together")
    await kv.create("taken", b"first")
    written = await kv.create_all([("new", b"a"), ("taken", b"b"), ("also-new", b"c"), ("new", b"d")])
    assert [type(w).__name__ for w in written] == [
        "int",
        "KeyWrongLastSequenceError",
        "int",
        "KeyWrongLastSequenceError",
    ]
    assert [(await kv.get(k)).value for k in ("new", "taken", "also-new")] == [b"a", b"first", b"c"]
    assert written[0] == (await kv.get("new")).revision
    assert await kv.create_all([]) == []


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
