"""The backbone end to end: Send through the generated stubs, a webhook arrives, GetMessage tells the story."""

import asyncio
import json
import uuid
from pathlib import Path

import nats
import pytest
from herald.v1 import common_pb2, events_pb2
from herald.v1 import message_service_pb2 as msg
from nats.js.api import DeliverPolicy

from devmesh.mesh import Mesh
from herald.libs.events import state_name
from tests.conftest import running_mesh
from tests.helpers.client import Herald, all_final
from tests.helpers.databases import backends
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


def _path() -> str:
    return f"/hook/{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("backend", backends())
async def test_send_reaches_webhook_and_status_shows_sent(backend: str, tmp_path: Path, sink: WebhookSink) -> None:
    async with running_mesh(tmp_path, backend) as (_, herald):
        _, app = await herald.create_app()
        template = await herald.create_template({"webhook": '{"text": "Hello {{ name }}", "order": "{{ order }}"}'})
        path = _path()
        message_id = await herald.send(
            app,
            msg.SendRequest(
                template_id=template,
                recipients=[
                    msg.Recipient(user_id="u1", addresses={"webhook": sink.url(path)}, variables={"name": "Ann"})
                ],
                variables={"order": "A-17"},
                channels=["webhook"],
            ),
        )
        assert message_id.startswith("msg_")

        [hit] = await sink.wait_for(path)
        assert json.loads(hit.body) == {"text": "Hello Ann", "order": "A-17"}
        assert hit.signature_ok, "the Herald-Signature header must verify with the shared secret"
        assert hit.headers["Content-Type"] == "application/json"
        assert hit.headers["Herald-Message-Id"] == message_id
        assert hit.headers["Idempotency-Key"] == hit.headers["Herald-Delivery-Id"]

        message = await herald.wait_message(app, message_id, all_final)
        [delivery] = message.deliveries
        assert delivery.state == S.DELIVERY_STATE_SENT
        assert delivery.attempts == 1
        assert delivery.channel == "webhook" and delivery.user_id == "u1"
        assert delivery.delivery_id == hit.headers["Herald-Delivery-Id"]
        assert (
            delivery.create_time.seconds > 0 and delivery.update_time.ToDatetime() >= delivery.create_time.ToDatetime()
        )
        assert [h.state for h in delivery.history] == [S.DELIVERY_STATE_PENDING, S.DELIVERY_STATE_SENT]
        assert message.template_id == template and message.template_version == 1
        assert message.category == S.CATEGORY_NOTIFICATION


async def test_another_team_reads_every_delivery_event_of_a_batch_as_docs_events_md_says(
    shared_mesh: tuple[Mesh, Herald], sink: WebhookSink
) -> None:
    """A durable consumer of herald.event.delivery.> gets DeliveryEvents payloads: one PENDING and one SENT for each
    delivery of a SendBatch, whatever way they were grouped."""
    mesh, herald = shared_mesh
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": '{"n": "{{ n }}"}'})
    path = _path()
    to = [msg.Recipient(addresses={"webhook": sink.url(path)})]
    entries = [msg.SendRequest(template_id=template, recipients=to, variables={"n": str(n)}) for n in range(20)]
    nc = await nats.connect(mesh.nats_url)
    try:
        # From now on: the shared mesh's stream holds every earlier test's events.
        sub = await nc.jetstream().subscribe(
            "herald.event.delivery.>", ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )
        reply = await herald.messages.SendBatch(msg.SendBatchRequest(requests=entries), metadata=app)
        ids = {r.response.message_id for r in reply.results}
        seen: dict[str, set[str]] = {}
        async with asyncio.timeout(60):
            async for raw in sub.messages:
                for event in events_pb2.DeliveryEvents.FromString(raw.data).events:
                    if event.message_id in ids:
                        assert raw.subject == f"herald.event.delivery.{state_name(event.state)}"
                        seen.setdefault(state_name(event.state), set()).add(event.delivery_id)
                if len(seen.get("sent", ())) == 20:
                    break
    finally:
        await nc.close()
    assert seen["pending"] == seen["sent"] == {f"{m}.0" for m in ids}
