"""The inbox store in one process, on each database: what a writer's batch does to the timelines."""

from herald.internal.v1 import work_pb2
from herald.libs.store import Database
from herald.services.adapters.inbox import timeline_store


async def test_a_batch_with_nothing_new_to_store_is_no_error(database_url: str) -> None:
    """A batch whose every job was stored before (a redelivery) reaches the store with nothing left to append:
    SQLite refused the empty counter upsert, and every such batch logged an error."""
    db = await Database.open(database_url, "adapters")
    try:
        job = work_pb2.DeliveryJob(delivery_id="d-1", app_id="app", user_id="u-1", channel="inbox", body="hi")
        async with db.session.begin() as session:
            first = await timeline_store.append(session, [job])
        async with db.session.begin() as session:
            fresh = [j for j in [job] if j.delivery_id not in await timeline_store.stored(session, [job.delivery_id])]
            again = await timeline_store.append(session, fresh)
        async with db.session() as session:
            highest = await timeline_store.max_seq(session, timeline_store.Owner("app", "u-1"))
    finally:
        await db.close()
    assert [i.seq for items in first.values() for i in items] == [1]
    assert again == {}
    assert highest == 1
