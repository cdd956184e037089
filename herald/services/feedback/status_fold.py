"""What a batch of delivery events makes of the deliveries' records: a pure fold, so its rules are tested alone.

Events may arrive out of order (several producers, redeliveries), so a delivery's state only moves forward by
rank; among equal ranks the later event wins. Attempts only grow; content, template and the first queued time are
kept once known. Each delivery counts once per state it reaches in the statistics (stats.Tally, via the record's
`counted` bits). The caller drops repeated events (by event id) before folding.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from herald.v1 import common_pb2, events_pb2

from herald.services.feedback import stats

S = common_pb2
RANK: dict[int, int] = {
    S.DELIVERY_STATE_PENDING: 0,
    S.DELIVERY_STATE_SCHEDULED: 1,
    S.DELIVERY_STATE_SENT: 2,
    S.DELIVERY_STATE_FAILED: 2,
    S.DELIVERY_STATE_SUPPRESSED: 2,
    S.DELIVERY_STATE_CANCELLED: 2,
    S.DELIVERY_STATE_EXPIRED: 2,
    S.DELIVERY_STATE_DIGESTED: 2,
    S.DELIVERY_STATE_DELIVERED: 3,
    S.DELIVERY_STATE_READ: 4,
    S.DELIVERY_STATE_OPENED: 4,
    S.DELIVERY_STATE_CLICKED: 5,
}
# A feedback_deliveries row as a dict of its columns.
Row = dict[str, Any]


@dataclass(frozen=True)
class Folded:
    # Deliveries first heard of in this batch: whole rows to insert.
    created: list[Row]
    # Known deliveries that changed, in key order: the primary key and the changed columns, for a bulk UPDATE.
    changes: list[Row]
    # What the batch moved between states, per (message, state): deliveries in minus deliveries out.
    moves: dict[tuple[str, int], int]


def fold(
    known: Mapping[str, Row], events: Iterable[tuple[events_pb2.DeliveryEvent, datetime]], tally: stats.Tally
) -> Folded:
    """Fold new events, each with the time it occurred, into the `known` records (left as read), oldest first,
    counting them in `tally`."""
    folded = {key: dict(row) for key, row in known.items()}
    created: dict[str, Row] = {}
    for event, occurred in sorted(events, key=lambda e: e[1]):
        delivery = folded.get(event.delivery_id) or created.get(event.delivery_id)
        if delivery is None:
            delivery = created[event.delivery_id] = new_delivery(event, occurred)
        apply(delivery, event, occurred, tally)
    changes = [_changes(known[key], row) for key, row in sorted(folded.items())]
    moves: Counter[tuple[str, int]] = Counter()
    for key, row in folded.items():
        if row["state"] != known[key]["state"]:
            moves[(row["message_id"], known[key]["state"])] -= 1
            moves[(row["message_id"], row["state"])] += 1
    for row in created.values():
        moves[(row["message_id"], row["state"])] += 1
    return Folded(list(created.values()), [c for c in changes if len(c) > 1], {k: n for k, n in moves.items() if n})


def apply(delivery: Row, event: events_pb2.DeliveryEvent, occurred: datetime, tally: stats.Tally) -> None:
    """One event's effect on its delivery's record."""
    delivery["attempts"] = max(delivery["attempts"], event.attempt)
    delivery["content"] = delivery["content"] or event.content
    delivery["template_id"] = delivery["template_id"] or event.template_id
    queued = delivery["queued_time"]
    if event.state == S.DELIVERY_STATE_PENDING and (queued is None or occurred < queued):
        delivery["queued_time"] = occurred
    new, current = RANK.get(event.state, 0), RANK.get(delivery["state"], 0)
    if new > current or (new == current and occurred >= delivery["update_time"]):
        delivery["state"] = event.state
        delivery["reason"] = event.reason
        delivery["provider"] = event.provider or delivery["provider"]
        delivery["update_time"] = occurred
    tally.count(delivery, event, occurred)


def new_delivery(event: events_pb2.DeliveryEvent, occurred: datetime) -> Row:
    """A delivery first heard of: the event's own fields are folded in after."""
    return {
        "delivery_id": event.delivery_id,
        "message_id": event.message_id,
        "app_id": event.app_id,
        "template_id": event.template_id,
        "content": event.content,
        "user_id": event.user_id,
        "channel": event.channel,
        "state": event.state,
        "attempts": 0,
        "reason": "",
        "provider": "",
        "create_time": occurred,
        "update_time": occurred,
        "counted": 0,
        "queued_time": None,
    }


def _changes(before: Row, after: Row) -> Row:
    """The primary key and what changed: a bulk UPDATE sets only those (content seldom, so search indexes rest)."""
    return {"delivery_id": after["delivery_id"]} | {k: v for k, v in after.items() if v != before[k]}
