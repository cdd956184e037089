"""Idempotency and queueing, in one process: intake's AcceptedQueue on the test's database (each backend) and the
in-memory bus, which drops a repeated Nats-Msg-Id as JetStream does. Two intake replicas claiming one key stay a
mesh test (test_send_batch_and_idempotency.py), as does a SendBatch reaching the adapters."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from herald.v1 import admin_service_pb2, common_pb2
from herald.v1 import message_service_pb2 as msg
from sqlalchemy import update

from herald.internal.v1 import work_pb2
from herald.libs import subjects
from herald.libs.bus import Incoming, each
from herald.libs.store import Database
from herald.services.intake import tables
from herald.services.intake.accepted_queue import AcceptedQueue
from tests.helpers.memory_bus import MemoryBus

TEMPLATE = admin_service_pb2.Template(template_id="t", version=1, category=common_pb2.CATEGORY_NOTIFICATION)
ACCEPTED = subjects.message_accepted(common_pb2.CATEGORY_NOTIFICATION)


@pytest.fixture
async def queue(database_url: str) -> AsyncIterator[tuple[AcceptedQueue, MemoryBus, Database]]:
    db = await Database.open(database_url, "intake")
    try:
        async with MemoryBus() as bus:
            yield AcceptedQueue(db, bus), bus, db
    finally:
        await db.close()


def _accepted(app_id: str = "app_1") -> work_pb2.AcceptedMessage:
    """A fresh message, as Acceptance.prepare makes one for each call."""
    return work_pb2.AcceptedMessage(
        message_id=f"msg_{uuid.uuid4().hex}",
        app_id=app_id,
        template=TEMPLATE,
        recipients=[msg.Recipient(addresses={"webhook": "https://x.example/"})],
        channels=["webhook"],
    )


async def test_twenty_concurrent_sends_with_one_key_make_one_message(
    queue: tuple[AcceptedQueue, MemoryBus, Database],
) -> None:
    """The claim behind test_send_batch_and_idempotency.py's test_twenty_concurrent_sends_with_one_key_make_one_
    message_and_one_delivery (which stays: that the repeats, queued again, make no second delivery is the router's
    and the adapters' doing)."""
    accepted, bus, _ = queue
    key = f"order-{uuid.uuid4().hex}"
    replies = await asyncio.gather(*(accepted.accept([(_accepted(), key)]) for _ in range(20)))
    ids = {reply.message_id for [reply] in replies}
    assert len(ids) == 1
    assert sum(not reply.duplicate for [reply] in replies) == 1, "exactly one call created it; the rest duplicate"
    assert {m.message_id for m in await _queued(bus)} == ids

    [other] = await accepted.accept([(_accepted("app_2"), key)])
    assert other.message_id not in ids and not other.duplicate, "keys are per app"


async def test_a_key_is_free_again_after_24_hours(queue: tuple[AcceptedQueue, MemoryBus, Database]) -> None:
    """Was test_send_batch_and_idempotency.py's test of the same name."""
    accepted, _, db = queue
    key = f"daily-{uuid.uuid4().hex}"
    [first] = await accepted.accept([(_accepted(), key)])
    async with db.session.begin() as session:
        await session.execute(
            update(tables.Message)
            .where(tables.Message.message_id == first.message_id)
            .values(create_time=datetime.now(UTC) - timedelta(hours=25))
        )
    [again] = await accepted.accept([(_accepted(), key)])
    assert again.message_id != first.message_id and not again.duplicate
    [repeat] = await accepted.accept([(_accepted(), key)])
    assert repeat.message_id == again.message_id and repeat.duplicate


async def test_messages_without_a_key_are_queued_together_and_not_stored(
    queue: tuple[AcceptedQueue, MemoryBus, Database],
) -> None:
    accepted, bus, db = queue
    messages = [_accepted() for _ in range(3)]
    replies = await accepted.accept([(m, "") for m in messages])
    assert [r.message_id for r in replies] == [m.message_id for m in messages]
    assert (await bus.subject_counts(subjects.MESSAGES_STREAM)) == {ACCEPTED: 1}, "one AcceptedBatch"
    assert [m.message_id for m in await _queued(bus)] == [m.message_id for m in messages]
    async with db.session() as session:
        assert await session.get(tables.Message, messages[0].message_id) is None


async def _queued(bus: MemoryBus) -> list[work_pb2.AcceptedMessage]:
    """Every AcceptedMessage on the accepted subject so far, as the router would read them."""
    found: list[work_pb2.AcceptedMessage] = []
    done = asyncio.Event()
    stored = sum((await bus.subject_counts(subjects.MESSAGES_STREAM)).values())
    seen = 0

    async def read(incoming: Incoming) -> None:
        nonlocal seen
        found.extend(work_pb2.AcceptedBatch.FromString(incoming.data).messages)
        seen += 1
        if seen == stored:
            done.set()

    await bus.consume(subjects.MESSAGES_STREAM, f"test-{uuid.uuid4().hex[:8]}", ACCEPTED, each(read))
    await asyncio.wait_for(done.wait(), 10)
    return found
