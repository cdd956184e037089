"""SREs see what routing decides - queued, held, suppressed and why, expired, cancelled - per category in the
router's /metrics, without reading one status record."""

import uuid

from herald.v1 import message_service_pb2 as msg

from devmesh.mesh import Mesh
from tests.helpers.client import Herald, all_final
from tests.helpers.metrics import scrape, total
from tests.helpers.webhook_sink import WebhookSink

NAME = "herald_router_decisions_total"


async def test_each_routing_decision_is_counted_by_outcome_and_reason(
    shared_mesh: tuple[Mesh, Herald], sink: WebhookSink
) -> None:
    mesh, herald = shared_mesh
    url = mesh.metrics_url("router")
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    before = await scrape(url)
    to_sink = msg.Recipient(addresses={"webhook": sink.url(f"/decided/{uuid.uuid4().hex[:8]}")})
    nowhere = msg.Recipient(user_id=f"nobody-{uuid.uuid4().hex[:8]}")  # not in the directory, no address given
    for recipient in (to_sink, nowhere):
        message_id = await herald.send(app, msg.SendRequest(template_id=template, recipients=[recipient]))
        await herald.wait_message(app, message_id, all_final)
    after = await scrape(url)

    def grew(**labels: str) -> float:
        return total(after, NAME, category="notification", **labels) - total(
            before, NAME, category="notification", **labels
        )

    assert grew(outcome="pending", reason_code="") == 1
    assert grew(outcome="suppressed", reason_code="no_address") == 1
