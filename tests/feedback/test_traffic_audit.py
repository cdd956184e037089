"""The audit records of successful Sends and SendBatches, written by feedback from the accepted messages: one per
Send naming its message, one per SendBatch call (its messages of one category) naming the app, the same records
however often the batch is redelivered, and nothing of the messages' content."""

import json

from herald.v1 import message_service_pb2

from herald.internal.v1 import work_pb2
from herald.libs.timeutil import now, to_timestamp
from herald.services.feedback.audit_log import traffic_rows

SEND, SEND_BATCH = "herald.v1.MessageService/Send", "herald.v1.MessageService/SendBatch"


def _message(message_id: str, accepted_by: str, app_id: str = "app_1") -> work_pb2.AcceptedMessage:
    return work_pb2.AcceptedMessage(
        message_id=message_id,
        app_id=app_id,
        accepted_by=accepted_by,
        variables={"code": "424242"},
        recipients=[message_service_pb2.Recipient(user_id="u1", addresses={"email": "ada@example.org"})],
        create_time=to_timestamp(now()),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )


def test_each_send_is_a_record_and_each_batch_call_one_with_no_content() -> None:
    batch = [
        _message("m1", SEND),
        _message("m2", SEND),
        _message("m3", SEND_BATCH),
        _message("m4", SEND_BATCH),
        _message("m5", SEND_BATCH, app_id="app_2"),
        _message("m6", ""),  # a part of a topic's fan-out: its call was recorded by intake
    ]
    rows = traffic_rows(batch)
    by_target = {row["target"]: json.loads(row["record"]) for row in rows}
    assert set(by_target) == {"messages/m1", "messages/m2", "apps/app_1/messages", "apps/app_2/messages"}
    assert by_target["apps/app_1/messages"]["after"] == {"message_ids": ["m3", "m4"]}
    record = by_target["messages/m1"]
    assert (record["actor"], record["action"], record["outcome"]) == ("app:app_1", SEND, "OK")
    assert record["traceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert not any(secret in row["record"] for row in rows for secret in ("424242", "ada@example.org"))
    assert [r["event_id"] for r in traffic_rows(batch)] == [r["event_id"] for r in rows], "a redelivery repeats ids"
