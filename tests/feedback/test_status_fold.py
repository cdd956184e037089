"""The fold on its own: what a sequence of delivery events - out of order, repeated, racing - makes of a
delivery's record, and what it counts in the statistics."""

from datetime import UTC, datetime, timedelta
from typing import Any

from herald.v1 import common_pb2, events_pb2

from herald.libs.timeutil import to_timestamp
from herald.services.feedback import stats, status_fold

S = common_pb2
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FIELDS: dict[str, Any] = {"message_id": "msg_01", "app_id": "app", "channel": "webhook", "template_id": "t"}


def event(
    state: common_pb2.DeliveryState.ValueType, seconds: float, *, attempt: int = 1, **fields: Any
) -> tuple[events_pb2.DeliveryEvent, datetime]:
    at = T0 + timedelta(seconds=seconds)
    e = events_pb2.DeliveryEvent(
        event_id=f"msg_01.0.{state}.{attempt}",
        delivery_id=fields.pop("delivery_id", "msg_01.0"),
        state=state,
        attempt=attempt,
        occur_time=to_timestamp(at),
        **(FIELDS | fields),
    )
    return e, at


def folded(*events: tuple[events_pb2.DeliveryEvent, datetime], known: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one delivery's record after the events, however they were ordered."""
    result = status_fold.fold({} if known is None else {"msg_01.0": known}, events, stats.Tally())
    rows = result.created or result.changes
    assert len(rows) == 1
    return (known or {}) | rows[0]


def test_a_late_pending_and_a_repeated_sent_leave_the_delivery_sent() -> None:
    sent = event(S.DELIVERY_STATE_SENT, 2, provider="webhook")
    pending = event(S.DELIVERY_STATE_PENDING, 1, attempt=0)
    tally = stats.Tally()
    # The outcome first, twice, then the step before it - in one batch and across batches.
    [record] = status_fold.fold({}, [sent, sent], tally).created
    [later] = status_fold.fold({"msg_01.0": record}, [pending], tally).changes
    record |= later
    assert (record["state"], record["attempts"], record["provider"]) == (S.DELIVERY_STATE_SENT, 1, "webhook")
    assert record["queued_time"] == T0 + timedelta(seconds=1), "the late PENDING still says when it was queued"
    assert record["update_time"] == T0 + timedelta(seconds=2)
    assert sum(tally.deliveries.values()) == 1, "SENT counted once"
    assert folded(pending, sent, sent)["state"] == S.DELIVERY_STATE_SENT


def test_a_state_moves_only_forward_by_rank_and_the_later_of_equal_ranks_wins() -> None:
    delivered = event(S.DELIVERY_STATE_DELIVERED, 3)
    sent = event(S.DELIVERY_STATE_SENT, 2)
    assert folded(delivered, sent)["state"] == S.DELIVERY_STATE_DELIVERED
    clicked, read = event(S.DELIVERY_STATE_CLICKED, 5), event(S.DELIVERY_STATE_READ, 6)
    assert folded(clicked, read)["state"] == S.DELIVERY_STATE_CLICKED, "a higher rank is kept though older"
    failed = event(S.DELIVERY_STATE_FAILED, 4, reason="gave up")
    expired = event(S.DELIVERY_STATE_EXPIRED, 3, reason="too late")
    record = folded(failed, expired)
    assert (record["state"], record["reason"]) == (S.DELIVERY_STATE_FAILED, "gave up"), "equal ranks: the later"
    retrying = event(S.DELIVERY_STATE_PENDING, 1, attempt=1, reason="retrying", provider="webhook")
    assert folded(retrying, event(S.DELIVERY_STATE_SENT, 2, attempt=2))["provider"] == "webhook"


def test_attempts_only_grow_and_content_and_template_are_kept_once_known() -> None:
    first = event(S.DELIVERY_STATE_PENDING, 1, attempt=3, content="Order A-17 shipped")
    second = event(S.DELIVERY_STATE_SENT, 2, attempt=2, content="", template_id="")
    record = folded(first, second)
    assert (record["attempts"], record["content"], record["template_id"]) == (3, "Order A-17 shipped", "t")


def test_a_known_record_changes_only_in_what_the_events_changed() -> None:
    [known] = status_fold.fold({}, [event(S.DELIVERY_STATE_PENDING, 1, content="x" * 1000)], stats.Tally()).created
    result = status_fold.fold({"msg_01.0": known}, [event(S.DELIVERY_STATE_SENT, 2, provider="webhook")], stats.Tally())
    assert result.created == []
    [change] = result.changes
    assert "content" not in change, "a bulk UPDATE leaves the searched text alone"
    assert change["delivery_id"] == "msg_01.0" and change["state"] == S.DELIVERY_STATE_SENT
    stale = status_fold.fold({"msg_01.0": known | change}, [event(S.DELIVERY_STATE_PENDING, 0)], stats.Tally())
    assert [set(c) for c in stale.changes] == [{"delivery_id", "queued_time"}]
    nothing = status_fold.fold({"msg_01.0": known | change}, [event(S.DELIVERY_STATE_SENT, 2)], stats.Tally())
    assert nothing.changes == [], "a repeat changes nothing"


def test_each_delivery_counts_once_per_state_it_reaches_with_its_latency_from_queued() -> None:
    tally = stats.Tally()
    batch = [
        event(S.DELIVERY_STATE_PENDING, 0),
        event(S.DELIVERY_STATE_SENT, 0.2, provider="webhook", cost_micros=700, currency_code="USD"),
        event(S.DELIVERY_STATE_SENT, 0.3, attempt=2, provider="webhook", cost_micros=700, currency_code="USD"),
        event(S.DELIVERY_STATE_PENDING, 0, delivery_id="msg_01.1"),
        event(S.DELIVERY_STATE_FAILED, 1, delivery_id="msg_01.1", reason_code="http_502"),
    ]
    result = status_fold.fold({}, batch, tally)
    assert len(result.created) == 2
    by_state = {key.state: (key, n) for key, n in tally.deliveries.items()}
    assert set(by_state) == {S.DELIVERY_STATE_SENT, S.DELIVERY_STATE_FAILED}, "PENDING is not a counted state"
    sent_key, sent_n = by_state[S.DELIVERY_STATE_SENT]
    assert sent_n == 1 and tally.cost_micros[sent_key] == 700, "a second SENT of the same delivery is not counted"
    assert sent_key.latency_bucket == stats.latency_bucket(0.2) and sent_key.currency_code == "USD"
    failed_key, _ = by_state[S.DELIVERY_STATE_FAILED]
    assert (failed_key.latency_bucket, failed_key.reason_code) == (stats.NOT_TIMED, "http_502")
    [sent_row] = [r for r in result.created if r["delivery_id"] == "msg_01.0"]
    again = stats.Tally()
    status_fold.fold({"msg_01.0": sent_row}, [event(S.DELIVERY_STATE_SENT, 9, attempt=3)], again)
    assert not again.deliveries, "the record's counted bits carry across batches"


def test_the_batch_moves_each_message_s_state_counts_by_what_changed() -> None:
    """GetMessage's counts are these moves added up; a delivery counts in exactly one state at any time."""
    first = status_fold.fold(
        {},
        [event(S.DELIVERY_STATE_PENDING, 1, delivery_id=f"msg_01.{n}") for n in range(3)]
        + [event(S.DELIVERY_STATE_SENT, 2, delivery_id="msg_01.0")],
        stats.Tally(),
    )
    assert first.moves == {("msg_01", S.DELIVERY_STATE_PENDING): 2, ("msg_01", S.DELIVERY_STATE_SENT): 1}
    known = {row["delivery_id"]: row for row in first.created}
    later = status_fold.fold(
        known,
        [
            event(S.DELIVERY_STATE_DELIVERED, 3, delivery_id="msg_01.0"),
            event(S.DELIVERY_STATE_FAILED, 3, delivery_id="msg_01.1"),
            event(S.DELIVERY_STATE_PENDING, 0, delivery_id="msg_01.2"),  # late and lower: no move
        ],
        stats.Tally(),
    )
    assert later.moves == {
        ("msg_01", S.DELIVERY_STATE_SENT): -1,
        ("msg_01", S.DELIVERY_STATE_DELIVERED): 1,
        ("msg_01", S.DELIVERY_STATE_PENDING): -1,
        ("msg_01", S.DELIVERY_STATE_FAILED): 1,
    }
