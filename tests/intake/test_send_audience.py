"""SendAudience: one message to an audience larger than a Send takes, streamed in chunks."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, all_final
from tests.helpers.webhook_sink import WebhookSink

CHUNK = 1000


async def _stream(header: msg.SendRequest, recipients: list[msg.Recipient]) -> AsyncIterator[msg.SendAudienceRequest]:
    yield msg.SendAudienceRequest(message=header)
    for start in range(0, len(recipients), CHUNK):
        yield msg.SendAudienceRequest(recipients=msg.AudienceChunk(recipients=recipients[start : start + CHUNK]))


async def test_an_audience_in_parts_is_one_message_delivered_once_each(herald: Herald, sink: WebhookSink) -> None:
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": '{"n": "{{ n }}"}'})
    path = f"/audience/{uuid.uuid4().hex[:8]}"
    audience = [
        msg.Recipient(user_id=f"u{i}", addresses={"webhook": sink.url(path)}, variables={"n": str(i)})
        for i in range(2000)
    ]
    header = msg.SendRequest(template_id=template, recipients=audience[:300])
    reply = await herald.messages.SendAudience(_stream(header, audience[300:]), metadata=app)
    assert reply.message_id.startswith("msg_") and not reply.duplicate

    hits = await sink.wait_for(path, 2000, timeout=120)
    ids = {h.headers["Herald-Delivery-Id"] for h in hits}
    assert ids == {f"{reply.message_id}.{n}" for n in range(2000)}, "one delivery per recipient, each once"
    assert {h.body for h in hits} == {f'{{"n": "{i}"}}'.encode() for i in range(2000)}
    message = await herald.wait_message(app, reply.message_id, lambda m: all_final(m, 2000), timeout=120)
    assert {c.state: c.count for c in message.delivery_state_counts} == {common_pb2.DELIVERY_STATE_SENT: 2000}
    await asyncio.sleep(1)
    assert len(sink.for_path(path)) == 2000


async def test_a_bad_recipient_is_named_by_its_place_in_the_audience_and_nothing_is_sent(
    herald: Herald, sink: WebhookSink
) -> None:
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    path = f"/audience/{uuid.uuid4().hex[:8]}"
    audience = [msg.Recipient(addresses={"webhook": sink.url(path)}) for _ in range(2500)]
    audience[1005] = msg.Recipient(addresses={"webhook": "ftp://nope"})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await herald.messages.SendAudience(_stream(msg.SendRequest(template_id=template), audience), metadata=app)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "recipients[1005].addresses[webhook]" in (err.value.details() or "")
    await asyncio.sleep(2)
    assert sink.for_path(path) == [], "the first chunk, already stored, must not be sent"


async def test_the_stream_must_start_with_the_message(herald: Herald) -> None:
    _, app = await herald.create_app()

    async def chunk_first() -> AsyncIterator[msg.SendAudienceRequest]:
        yield msg.SendAudienceRequest(recipients=msg.AudienceChunk(recipients=[msg.Recipient(user_id="u")]))

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await herald.messages.SendAudience(chunk_first(), metadata=app)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_dry_run_checks_an_audience_far_larger_than_a_send(herald: Herald) -> None:
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{{ n }}"})
    audience = [
        msg.Recipient(addresses={"webhook": "https://x.example/h"}, variables={"n": str(i)}) for i in range(20_000)
    ]
    header = msg.SendRequest(template_id=template, dry_run=True)
    reply = await herald.messages.SendAudience(_stream(header, audience), metadata=app)
    assert reply.message_id == ""


async def test_cancelling_a_scheduled_audience_cancels_every_part(herald: Herald, sink: WebhookSink) -> None:
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    path = f"/audience/{uuid.uuid4().hex[:8]}"
    audience = [msg.Recipient(addresses={"webhook": sink.url(path)}) for _ in range(1500)]
    header = msg.SendRequest(template_id=template)
    header.send_at.FromDatetime(datetime.now(UTC) + timedelta(seconds=60))
    reply = await herald.messages.SendAudience(_stream(header, audience), metadata=app)
    await herald.wait_message(app, reply.message_id, lambda m: m.delivery_count == 1500, timeout=60)
    await herald.messages.CancelMessage(msg.CancelMessageRequest(message_id=reply.message_id), metadata=app)
    everyone_cancelled = {common_pb2.DELIVERY_STATE_CANCELLED: 1500}
    await herald.wait_message(
        app,
        reply.message_id,
        lambda m: {c.state: c.count for c in m.delivery_state_counts} == everyone_cancelled,
        timeout=60,
    )
    assert sink.for_path(path) == []
