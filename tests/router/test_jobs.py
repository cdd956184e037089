"""The delivery jobs the router derives from a message carry what push providers read, and nothing it lacked."""

from datetime import UTC, datetime, timedelta

from herald.v1 import admin_service_pb2, common_pb2
from herald.v1 import message_service_pb2 as msg

from herald.internal.v1 import work_pb2
from herald.services.router import jobs


def _message() -> work_pb2.AcceptedMessage:
    template = admin_service_pb2.Template(
        template_id="t", contents=[common_pb2.ChannelContent(channel="apns", subject="Hi", body="There")]
    )
    recipient = msg.Recipient(addresses={"apns": "a" * 64})
    return work_pb2.AcceptedMessage(message_id="msg_1", template=template, recipients=[recipient], channels=["apns"])


def test_a_message_without_expire_at_makes_jobs_without_one() -> None:
    """APNs and FCM read an expire_at that is present, even a zero one, as "expire at once": an offline device
    would never get the notification."""
    [chain] = jobs.plan(_message(), {}).chains
    [(job, unrenderable)] = chain.steps
    assert not unrenderable
    assert not job.HasField("expire_at")


def test_a_message_with_expire_at_passes_it_on() -> None:
    expire_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    message = _message()
    message.expire_at.FromDatetime(expire_at)
    [chain] = jobs.plan(message, {}).chains
    [(job, _)] = chain.steps
    assert job.expire_at.ToDatetime(tzinfo=UTC) == expire_at
