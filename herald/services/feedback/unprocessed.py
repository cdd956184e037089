"""A message a stage gave up on (the bus dead-letters it on herald.unprocessed.<consumer> after its last retry,
herald/libs/bus) must not look, to whoever asks about it, as if it were still on its way: each delivery it concerns is
recorded FAILED, saying which stage gave up, why, and that an operator can replay it. The ids are the ones the
router derives (libs.ids.delivery_id), so a replay that then succeeds moves the same deliveries on."""

import structlog
from google.protobuf.message import DecodeError
from herald.v1 import common_pb2, events_pb2

from herald.internal.v1 import work_pb2
from herald.libs import delivery_jobs, events
from herald.libs.bus import Incoming
from herald.libs.ids import delivery_id

log = structlog.get_logger()

# What each work subject carries, by its prefix.
ACCEPTED = "herald.message.accepted."  # messages not yet routed (AcceptedBatch)
DUE = "herald.schedule.due."  # a scheduled message whose time came (AcceptedMessage)
JOBS = ("herald.delivery.", "herald.schedule.release.")  # deliveries' jobs (libs/delivery_jobs.py)
FALLBACK = "herald.message.fallback."  # a job going on to the next channel of its chain: that one was given up


def failed_events(incoming: Incoming) -> list[events_pb2.DeliveryEvent]:
    """The FAILED events of the deliveries a dead-lettered message concerns; none for other subjects (a cancel,
    an event, an erasure: nothing a delivery waits on) or for bytes that are not what the subject carries."""
    subject = incoming.headers.get("Herald-Subject", "")
    consumer = incoming.headers.get("Herald-Consumer", "?")
    reason = (
        f"herald gave up processing it ({consumer}: {incoming.headers.get('Herald-Reason', 'unknown error')}); "
        "it is kept among the unprocessed messages for an operator to replay"
    )
    try:
        if subject.startswith(ACCEPTED):
            messages = list(work_pb2.AcceptedBatch.FromString(incoming.data).messages)
        elif subject.startswith(DUE):
            messages = [work_pb2.AcceptedMessage.FromString(incoming.data)]
        elif subject.startswith(JOBS):
            jobs = delivery_jobs.read(incoming.data, incoming.headers)
            return [_failed(job, incoming.sequence, reason) for job in jobs]
        elif subject.startswith(FALLBACK):
            chain = work_pb2.DeliveryJob.FromString(incoming.data).fallback
            return [_failed(chain[0], incoming.sequence, reason)] if chain else []
        else:
            return []
    except DecodeError as e:
        log.error("an unprocessed message is not what its subject carries", subject=subject, error=str(e))
        return []
    return [event for message in messages for event in _of_message(message, reason, incoming.sequence)]


def _of_message(message: work_pb2.AcceptedMessage, reason: str, sequence: int) -> list[events_pb2.DeliveryEvent]:
    """Every delivery the router would have made of the message: each recipient's on each of its channels (a
    fallback chain's later steps too: none of them will be tried)."""
    count = len(message.channels)
    return [
        _failed(
            work_pb2.DeliveryJob(
                delivery_id=delivery_id(message.message_id, position, j, count),
                message_id=message.message_id,
                app_id=message.app_id,
                template_id=message.template.template_id,
                user_id=recipient.user_id,
                channel=channel,
            ),
            sequence,
            reason,
        )
        for position, recipient in enumerate(message.recipients, start=message.recipient_offset)
        for j, channel in enumerate(message.channels)
    ]


def _failed(job: work_pb2.DeliveryJob, sequence: int, reason: str) -> events_pb2.DeliveryEvent:
    """Its id is the dead letter's sequence: a redelivered dead letter is recorded once, a second give-up after a
    replay again."""
    unprocessed = f"{job.delivery_id}.unprocessed.{sequence}"
    return events.event(job, common_pb2.DELIVERY_STATE_FAILED, event_id=unprocessed, reason=reason)
