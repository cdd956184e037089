"""SendBatch answers entry by entry; an idempotency key repeated sends nothing more.

A key's claim and its 24-hour window, and the size a message may have, are tested in one process
(test_accepted_queue.py, test_acceptance.py)."""

import asyncio
import uuid

import grpc
from herald.v1 import common_pb2, message_service_pb2_grpc
from herald.v1 import message_service_pb2 as msg

from devmesh.mesh import Mesh
from tests.helpers.client import Herald, all_final
from tests.helpers.replicas import extra_replica
from tests.helpers.webhook_sink import WebhookSink


async def test_one_bad_entry_never_fails_the_rest(herald: Herald, sink: WebhookSink) -> None:
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": '{"n": "{{ n }}"}'})
    path = f"/batch/{uuid.uuid4().hex[:8]}"
    good = msg.SendRequest(
        template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})], variables={"n": "1"}
    )
    missing_variable = msg.SendRequest(template_id=template, recipients=good.recipients)
    unknown_template = msg.SendRequest(template_id="nope", recipients=good.recipients, variables={"n": "2"})
    reply = await herald.messages.SendBatch(
        msg.SendBatchRequest(requests=[good, missing_variable, unknown_template, good]), metadata=app
    )
    outcomes = [r.WhichOneof("outcome") for r in reply.results]
    assert outcomes == ["response", "error", "error", "response"]
    assert reply.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert reply.results[1].error.fields == ["variables"]
    assert reply.results[2].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    ids = [reply.results[0].response.message_id, reply.results[3].response.message_id]
    assert len(set(ids)) == 2
    await sink.wait_for(path, 2)
    for message_id in ids:
        message = await herald.wait_message(app, message_id, all_final)
        assert message.deliveries[0].state == common_pb2.DELIVERY_STATE_SENT


async def test_a_batch_heavier_than_one_bus_message_is_delivered_whole(herald: Herald, sink: WebhookSink) -> None:
    """intake queues a SendBatch as few publishes as fit; ten 300 KiB messages need several (NATS: 1 MiB each)."""
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": '{"n": "{{ n }}", "filler": "{{ filler }}"}'})
    path = f"/heavy/{uuid.uuid4().hex[:8]}"
    recipient = msg.Recipient(addresses={"webhook": sink.url(path)})
    entries = [
        msg.SendRequest(template_id=template, recipients=[recipient], variables={"n": str(n), "filler": "x" * 4000})
        for n in range(10)
    ]
    for entry in entries:  # 75 recipients of their own (4,000-character variables, 75 x 4 KB = 300 KiB)
        entry.recipients.extend(
            msg.Recipient(addresses=recipient.addresses, variables=entry.variables) for _ in range(74)
        )
    reply = await herald.messages.SendBatch(msg.SendBatchRequest(requests=entries), metadata=app)
    assert all(r.WhichOneof("outcome") == "response" for r in reply.results), reply
    await sink.wait_for(path, 750, timeout=120)
    messages = [await herald.wait_message(app, r.response.message_id, all_final) for r in reply.results]
    assert [len(m.deliveries) for m in messages] == [75] * 10


async def test_twenty_concurrent_sends_with_one_key_make_one_message_and_one_delivery(
    herald: Herald, sink: WebhookSink
) -> None:
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    path = f"/idem/{uuid.uuid4().hex[:8]}"
    request = msg.SendRequest(
        template_id=template,
        recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})],
        idempotency_key=f"order-{uuid.uuid4().hex}",
    )
    replies = await asyncio.gather(*(herald.messages.Send(request, metadata=app) for _ in range(20)))
    assert len({r.message_id for r in replies}) == 1
    assert sum(not r.duplicate for r in replies) == 1, "exactly one call created it; the rest were told duplicate"
    await herald.wait_message(app, replies[0].message_id, all_final)
    await asyncio.sleep(1)
    assert len(sink.for_path(path)) == 1

    _, other_app = await herald.create_app()
    other = await herald.messages.Send(request, metadata=other_app)
    assert other.message_id != replies[0].message_id and not other.duplicate, "keys are per app"


async def test_one_idempotency_key_on_two_replicas_makes_one_message(shared_mesh: tuple[Mesh, Herald]) -> None:
    mesh, herald = shared_mesh
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    request = msg.SendRequest(
        template_id=template,
        recipients=[msg.Recipient(addresses={"webhook": "https://example.com/h"})],
        idempotency_key=f"k-{uuid.uuid4().hex}",
    )
    async with extra_replica(mesh, "intake") as second, grpc.aio.insecure_channel(second.addr) as channel:
        other = message_service_pb2_grpc.MessageServiceStub(channel)
        replies = await asyncio.gather(*(stub.Send(request, metadata=app) for stub in [herald.messages, other] * 10))
    assert len({r.message_id for r in replies}) == 1
    assert sum(not r.duplicate for r in replies) == 1
