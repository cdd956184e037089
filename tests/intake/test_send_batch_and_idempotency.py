"""SendBatch answers entry by entry; an idempotency key repeated sends nothing more."""

import asyncio
import uuid

import grpc
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, all_final
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


async def test_repeated_idempotency_key_returns_the_first_message_and_sends_once(
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
    first = await herald.messages.Send(request, metadata=app)
    repeats = await asyncio.gather(*(herald.messages.Send(request, metadata=app) for _ in range(5)))
    assert not first.duplicate
    assert {r.message_id for r in repeats} == {first.message_id}
    assert all(r.duplicate for r in repeats)
    await herald.wait_message(app, first.message_id, all_final)
    await asyncio.sleep(1)
    assert len(sink.for_path(path)) == 1

    _, other_app = await herald.create_app()
    other = await herald.messages.Send(request, metadata=other_app)
    assert other.message_id != first.message_id and not other.duplicate, "keys are per app"
