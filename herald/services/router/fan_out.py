"""A Send to a topic: its subscribers, a page at a time in user-id order, become parts of the message, as a large
audience's are, each routed like any message. A redelivery publishes the same parts under the same Nats-Msg-Ids,
which JetStream drops."""

from herald.v1 import message_service_pb2

from herald.internal.v1 import work_pb2
from herald.libs import subjects
from herald.libs.bus import Publisher
from herald.libs.store import Database
from herald.services.router.topic_service import subscribers

# Subscribers of a topic per part of a Send to it: a part is routed as one message.
FAN_OUT_PAGE = 1000


async def fan_out(db: Database, bus: Publisher, message: work_pb2.AcceptedMessage) -> None:
    after, part = "", 0
    while users := await subscribers(db, message.app_id, message.topic, after, FAN_OUT_PAGE):
        piece = work_pb2.AcceptedMessage()
        piece.CopyFrom(message)
        piece.topic, piece.part, piece.recipient_offset = "", part + 1, part * FAN_OUT_PAGE
        piece.recipients.extend(message_service_pb2.Recipient(user_id=u) for u in users)
        batch = work_pb2.AcceptedBatch(messages=[piece])
        subject = subjects.message_parts(message.template.category)
        await bus.publish(subject, batch.SerializeToString(), f"{message.message_id}.{piece.part}")
        after, part = users[-1], part + 1
