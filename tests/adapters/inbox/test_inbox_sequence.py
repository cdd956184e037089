"""The inbox timeline: every item gets the user's next sequence number, gap-free and unique, however many
writers and adapters processes store at once; a device that comes back with its cursor gets exactly what it
missed; a live Subscribe sees a new item at once, whichever adapters process stored it."""

import asyncio
import secrets
import statistics
import time
import uuid

import grpc
import pytest
from herald.v1 import common_pb2, inbox_service_pb2, inbox_service_pb2_grpc

from devmesh.mesh import Mesh
from herald.libs import subjects
from herald.services.adapters.inbox.notices import FIRST_RECHECKS, RECHECK
from tests.adapters.inbox.timeline import inbox_app, send, sync_all, wait_for_items
from tests.helpers.client import Herald
from tests.helpers.otlp_receiver import OtlpReceiver, sampled_trace
from tests.helpers.replicas import extra_replica

# Whole meshes started, killed or kept waiting: run first, beside the rest (tests/conftest.py).
pytestmark = pytest.mark.slow

S = common_pb2
ITEMS = 10_000
WRITERS = 4
BATCH = 100
# Items a live subscriber times, one at a time.
LIVE_ITEMS = 9


async def test_ten_thousand_items_from_four_writers_on_two_processes_get_gap_free_unique_sequences(
    shared_mesh: tuple[Mesh, Herald],
) -> None:
    mesh, herald = shared_mesh
    app, template = await inbox_app(herald)
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    # Only the second adapters process exports spans: the items it stored show both processes wrote.
    replica_spans = OtlpReceiver()
    await replica_spans.start()
    tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": replica_spans.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    traces = [secrets.token_hex(16) for _ in range(ITEMS // BATCH)]
    chunks = iter(enumerate(range(0, ITEMS, BATCH)))
    try:
        async with extra_replica(mesh, "adapters", tracing):

            async def writer() -> None:
                for batch, first in chunks:
                    await send(herald, app + sampled_trace(traces[batch]), template, user_id, first, BATCH)

            await asyncio.gather(*(writer() for _ in range(WRITERS)))
            await wait_for_items(herald, app, user_id, ITEMS)
    finally:
        await replica_spans.stop()

    items = await sync_all(herald, app, user_id)
    assert [i.seq for i in items] == list(range(1, ITEMS + 1))
    assert sorted(int(i.body.removeprefix("item ")) for i in items) == list(range(ITEMS))
    assert len({i.message_id for i in items}) == ITEMS
    inbox_jobs = subjects.delivery_job(S.CATEGORY_NOTIFICATION, "inbox")
    by_replica = [t for t, _, name in replica_spans.spans if name == f"{inbox_jobs} process" and t in set(traces)]
    assert 0 < len(by_replica) < ITEMS, "both adapters processes must have stored items"


async def test_a_device_back_with_its_cursor_gets_exactly_what_it_missed_in_order(herald: Herald) -> None:
    app, template = await inbox_app(herald)
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    await send(herald, app, template, user_id, 0, 5)
    await wait_for_items(herald, app, user_id, 5)
    seen = await sync_all(herald, app, user_id)
    cursor = seen[-1].seq
    assert [i.seq for i in seen] == [1, 2, 3, 4, 5]

    await send(herald, app, template, user_id, 5, 7)  # while the device was away
    await wait_for_items(herald, app, user_id, 12)

    missed = await sync_all(herald, app, user_id, after=cursor)
    assert [i.seq for i in missed] == list(range(6, 13))
    # The seven messages of one batch are stored in the order they were routed, not necessarily sent.
    assert sorted(i.body for i in missed) == sorted(f"item {n}" for n in range(5, 12))
    stream = herald.inbox.Subscribe(inbox_service_pb2.SubscribeRequest(user_id=user_id, after_seq=cursor), metadata=app)
    replayed = [await stream.read() for _ in range(7)]
    assert [(i.seq, i.body) for i in replayed] == [(i.seq, i.body) for i in missed]
    await send(herald, app, template, user_id, 12, 1)
    live = await asyncio.wait_for(stream.read(), 30)
    assert live.seq == 13 and live.body == "item 12"
    stream.cancel()


# It times herald's latency: run alone, after the rest (Makefile, `make test`).
@pytest.mark.serial
async def test_a_live_subscriber_on_another_process_sees_a_new_item_within_100_ms(
    shared_mesh: tuple[Mesh, Herald],
) -> None:
    mesh, herald = shared_mesh
    app, template = await inbox_app(herald)
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    # This replica consumes only marketing deliveries, so the notification items below are stored by the first
    # adapters process: the subscriber hears of them through NATS, not through its own memory.
    async with (
        extra_replica(mesh, "adapters", {"HERALD_PIPELINES": "marketing"}) as replica,
        grpc.aio.insecure_channel(replica.addr) as channel,
    ):
        stub = inbox_service_pb2_grpc.InboxServiceStub(channel)
        stream = stub.Subscribe(inbox_service_pb2.SubscribeRequest(user_id=user_id), metadata=app)
        await stub.GetUnreadCount(inbox_service_pb2.GetUnreadCountRequest(user_id=user_id), metadata=app)
        # The stream is listening, and past its first quick re-reads (FIRST_RECHECKS): what it sees now it heard of.
        await asyncio.sleep(sum(FIRST_RECHECKS) + 0.25)
        lags = []
        for n in range(LIVE_ITEMS):
            await send(herald, app, template, user_id, n, 1)
            item = await asyncio.wait_for(stream.read(), 30)
            arrived = time.time()
            assert item.seq == n + 1
            lags.append(arrived - item.create_time.ToNanoseconds() / 1e9)
        stream.cancel()
    # Heard of, not found by the stream's own re-read every RECHECK seconds (on average RECHECK / 2 late) ...
    assert max(lags) < RECHECK / 5, f"seconds from stored to seen: {lags}"
    # ... and typically within 100 ms: a busy machine may hold up a few items, not most.
    assert statistics.median(lags) < 0.1, f"seconds from stored to seen: {lags}"
