"""A job redelivered after its outcome was recorded - the process died before publishing what follows it or
before acking - publishes the same follow-ups again: its dead letter, its dead-address event, and the fallback
only where the outcome allowed one. Checked on the delivery record itself, in a real (SQLite) database."""

from pathlib import Path
from typing import cast

import pytest
from herald.v1 import common_pb2, events_pb2

from libs.bus import Bus
from libs.rate_limit import RateLimiter
from libs.store import Database
from services.adapters.accounts import Accounts
from services.adapters.deliverer import Deliverer, Result
from services.adapters.tracking import Tracker

S = common_pb2


@pytest.mark.parametrize(
    "outcome",
    [
        # The provider may have taken it: dead-lettered, and no other channel may take over.
        Result(S.DELIVERY_STATE_FAILED, 1, "twilio-us", reason="outcome unknown", dead=True, may_fall_back=False),
        # Retries exhausted: dead-lettered, and the fallback chain takes over.
        Result(S.DELIVERY_STATE_FAILED, 4, "twilio-us", reason="gave up after 4 attempts", dead=True),
        # The device token is gone: the directory must hear of it.
        Result(S.DELIVERY_STATE_FAILED, 1, "apns-prod", reason="Unregistered", address_dead=True),
    ],
)
@pytest.mark.parametrize("first", [True, False], ids=["bulk-inserted", "through-its-record"])
async def test_the_record_keeps_what_must_follow_the_outcome(tmp_path: Path, outcome: Result, first: bool) -> None:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'adapters.db'}", "adapters")
    try:
        # Recording and planning a final outcome touch neither the bus, the provider accounts nor their pacing.
        deliverer = Deliverer(
            db, cast(Bus, None), cast(Accounts, None), {}, cast(RateLimiter, None), cast(Tracker, None)
        )
        job = events_pb2.DeliveryJob(
            delivery_id="msg_01.0", message_id="msg_01", channel="sms", address="+1555", category=S.CATEGORY_CRITICAL
        )
        trace = f"00-{'a1' * 16}-{'b2' * 8}-01"
        # A first attempt's outcome is inserted in bulk; a later one goes through the record.
        await deliverer._store([(job, outcome)], {job.delivery_id} if first else set(), {job.delivery_id: trace})
        [record] = (await deliverer._load([job.delivery_id])).values()
        # What a receipt long after needs: the delivery's category for its event, its trace for its span's link.
        assert (record.category, record.traceparent) == (S.CATEGORY_CRITICAL, trace)

        again = await deliverer._plan(job, record, stop="")

        assert isinstance(again, Result) and not again.new
        assert (again.state, again.reason) == (outcome.state, outcome.reason)
        assert (again.dead, again.may_fall_back, again.address_dead) == (
            outcome.dead,
            outcome.may_fall_back,
            outcome.address_dead,
        )
    finally:
        await db.close()
