"""A delivery job a stage gave up on (dead-lettered on herald.unprocessed.<consumer>, as herald/libs/bus does) reads
FAILED with the stage's reason in its status - the job itself, each job of a group the router queued together, or,
for a job on its way to its chain's next channel, that next delivery - and a dead letter that is redelivered to
feedback is recorded once."""

import uuid

import nats
from herald.v1 import common_pb2

from devmesh.mesh import Mesh
from herald.internal.v1 import work_pb2
from herald.libs import subjects
from herald.libs.bus.grouping import RECORDS_HEADER, grouped
from tests.helpers.client import Herald, all_final
from tests.helpers.status_events import accepted, publish

S = common_pb2


def _job(delivery_id: str, message_id: str, app_id: str, channel: str) -> work_pb2.DeliveryJob:
    return work_pb2.DeliveryJob(
        delivery_id=delivery_id, message_id=message_id, app_id=app_id, channel=channel, template_id="t"
    )


async def test_a_given_up_job_and_a_given_up_fallback_read_failed(shared_mesh: tuple[Mesh, Herald]) -> None:
    mesh, herald = shared_mesh
    app_id, app = await herald.create_app()
    message_id = f"msg_{uuid.uuid4().hex[:16]}"
    job = _job(f"{message_id}.0", message_id, app_id, "sms")
    chained = _job(f"{message_id}.1", message_id, app_id, "webhook")
    chained.fallback.append(_job(f"{message_id}.2", message_id, app_id, "email"))
    together = [_job(f"{message_id}.{n}", message_id, app_id, "push") for n in (3, 4)]
    letters = [
        (subjects.delivery_job(S.CATEGORY_NOTIFICATION, "sms"), job.SerializeToString(), "adapters-notification-sms"),
        (subjects.fallback(S.CATEGORY_NOTIFICATION), chained.SerializeToString(), "router-fallback"),
        (
            subjects.delivery_job(S.CATEGORY_NOTIFICATION, "push"),
            grouped(j.SerializeToString() for j in together),
            "adapters-notification-push",
        ),
    ]
    await publish(mesh, accepted(message_id, app_id))  # as intake did: feedback knows the message
    nc = await nats.connect(mesh.nats_url)
    try:
        for subject, letter, consumer in letters:
            headers = {"Herald-Subject": subject, "Herald-Consumer": consumer, "Herald-Reason": "KeyError('x')"}
            if consumer.endswith("push"):  # what the bus kept of the group's own headers
                headers[RECORDS_HEADER] = str(len(together))
            for _ in range(2):  # a dead letter seen twice (a redelivery) is still one event
                await nc.jetstream().publish(subjects.unprocessed(consumer), letter, headers=headers)
    finally:
        await nc.close()

    message = await herald.wait_message(app, message_id, lambda m: all_final(m, 4))
    seen = {d.delivery_id: d for d in message.deliveries}
    assert set(seen) == {f"{message_id}.{n}" for n in (0, 2, 3, 4)}, "the job, the chain's next, the group's two"
    for delivery, consumer in (
        (seen[f"{message_id}.0"], "adapters-notification-sms"),
        (seen[f"{message_id}.2"], "router-fallback"),
        (seen[f"{message_id}.3"], "adapters-notification-push"),
        (seen[f"{message_id}.4"], "adapters-notification-push"),
    ):
        assert delivery.state == S.DELIVERY_STATE_FAILED
        assert delivery.reason.startswith(f"herald gave up processing it ({consumer}: KeyError('x'))")
    assert seen[f"{message_id}.2"].channel == "email"
