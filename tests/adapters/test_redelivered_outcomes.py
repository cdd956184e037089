"""A job redelivered after its outcome was recorded - the process died before publishing what follows it or
before acking - publishes the same follow-ups again: its dead letter, its dead-address event, and the fallback
only where the outcome allowed one. Checked on the delivery record itself, in a real database."""

import pytest
from herald.v1 import common_pb2
from opentelemetry import trace

from herald.internal.v1 import work_pb2
from herald.libs.bus import Incoming
from herald.libs.store import Database
from herald.services.adapters import delivery_records, retry_policy
from herald.services.adapters.attempt import FINAL, Attempt, Result

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
async def test_the_record_keeps_what_must_follow_the_outcome(database_url: str, outcome: Result, first: bool) -> None:
    db = await Database.open(database_url, "adapters")
    try:
        job = work_pb2.DeliveryJob(
            delivery_id="msg_01.0", message_id="msg_01", channel="sms", address="+1555", category=S.CATEGORY_CRITICAL
        )
        traceparent = f"00-{'a1' * 16}-{'b2' * 8}-01"
        context = trace.SpanContext(int("a1" * 16, 16), int("b2" * 8, 16), True, trace.TraceFlags(1))
        span = trace.NonRecordingSpan(context)  # the span the job was worked in
        incoming = Incoming("herald.delivery", job.SerializeToString(), {}, 1, trace.INVALID_SPAN, 1)
        record = None
        if not first:  # an earlier attempt left a record: this outcome is written through it
            retrying = Result(S.DELIVERY_STATE_PENDING, 1, "twilio-us", reason="retrying in 1s", retry_in=1.0)
            await delivery_records.store(db, [Attempt(incoming, job, None, span, outcome=retrying)])
            [record] = (await delivery_records.load(db, [job.delivery_id])).values()
        await delivery_records.store(db, [Attempt(incoming, job, record, span, outcome=outcome)])
        [record] = (await delivery_records.load(db, [job.delivery_id])).values()
        # What a receipt long after needs: the delivery's category for its event, its trace for its span's link.
        assert (record.category, record.traceparent) == (S.CATEGORY_CRITICAL, traceparent)

        assert record.state in FINAL  # so a redelivered job is settled by the record, not sent again
        again = retry_policy.on_record(record)

        assert not again.new
        assert (again.state, again.reason) == (outcome.state, outcome.reason)
        assert (again.dead, again.may_fall_back, again.address_dead) == (
            outcome.dead,
            outcome.may_fall_back,
            outcome.address_dead,
        )
    finally:
        await db.close()
