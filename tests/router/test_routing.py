"""Who gets a delivery and at which address: the directory, the request's own addresses, and suppression."""

import asyncio
import uuid

import nats
from herald.v1 import admin_service_pb2, common_pb2, directory_service_pb2
from herald.v1 import message_service_pb2 as msg

from devmesh.mesh import Mesh
from herald.internal.v1 import work_pb2
from herald.libs import subjects
from tests.helpers.client import Herald
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


def _path() -> str:
    return f"/hook/{uuid.uuid4().hex[:8]}"


async def test_recipient_resolved_from_directory(herald: Herald, sink: WebhookSink) -> None:
    path, user_id = _path(), f"user-{uuid.uuid4().hex[:6]}"
    await herald.directory.UpsertUser(
        directory_service_pb2.UpsertUserRequest(
            user=directory_service_pb2.User(
                user_id=user_id,
                addresses={"webhook": sink.url(path)},
                timezone="Asia/Shanghai",
                quiet_hours=common_pb2.QuietHours(disabled=True),
            )
        ),
        metadata=herald.admin,
    )
    _, _, message = await herald.send_and_wait(msg.Recipient(user_id=user_id))
    assert message.deliveries[0].state == S.DELIVERY_STATE_SENT
    assert len(sink.for_path(path)) == 1


async def test_no_address_anywhere_is_suppressed_with_reason(herald: Herald) -> None:
    _, _, message = await herald.send_and_wait(msg.Recipient(user_id=f"nobody-{uuid.uuid4().hex[:6]}"))
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_SUPPRESSED
    assert "no webhook address" in delivery.reason
    assert delivery.attempts == 0


async def test_a_message_the_router_cannot_route_is_retried_alone_not_with_its_batch(
    shared_mesh: tuple[Mesh, Herald], sink: WebhookSink
) -> None:
    """An accepted batch whose first message fails on every attempt (a send_at no clock can hold): the others of
    the batch are delivered and their batch is done with; the failing one goes back on its own, rather than
    taking its whole batch through the router again every retry."""
    mesh, _ = shared_mesh
    path = _path()
    template = admin_service_pb2.Template(
        template_id="t",
        version=1,
        category=S.CATEGORY_NOTIFICATION,
        contents=[S.ChannelContent(channel="webhook", body="{}")],
    )
    recipient = msg.Recipient(addresses={"webhook": sink.url(path)})

    def message(n: int) -> work_pb2.AcceptedMessage:
        return work_pb2.AcceptedMessage(
            message_id=f"msg_{uuid.uuid4().hex}",
            app_id="app",
            template=template,
            recipients=[recipient],
            channels=["webhook"],
            variables={"n": str(n)},
        )

    poison = message(0)
    poison.send_at.nanos = -1
    batch = work_pb2.AcceptedBatch(messages=[poison, message(1), message(2)])
    nc = await nats.connect(mesh.nats_url)
    try:
        await nc.jetstream().publish(subjects.message_accepted(S.CATEGORY_NOTIFICATION), batch.SerializeToString())
    finally:
        await nc.close()

    delivered = await sink.wait_for(path, 2, timeout=60)
    assert {hit.headers["Herald-Message-Id"] for hit in delivered} == {m.message_id for m in batch.messages[1:]}
    # The requeue is logged once the batch's routing is done, which a busy machine may show after the deliveries.
    log = mesh.binaries["router"].log_path
    for _ in range(100):
        if any("requeued alone" in line and poison.message_id in line for line in log.read_text().splitlines()):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"no 'requeued alone' for {poison.message_id} in the router's log within 10 s")
