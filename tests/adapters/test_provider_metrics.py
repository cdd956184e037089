"""SREs see each provider account's calls in the adapters' /metrics: how they ended and how long they took."""

import uuid

from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg

from devmesh.mesh import Mesh
from tests.helpers.client import Herald, all_final
from tests.helpers.metrics import scrape, total
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


async def test_provider_calls_are_counted_by_outcome_and_timed(
    shared_mesh: tuple[Mesh, Herald], sink: WebhookSink
) -> None:
    mesh, herald = shared_mesh
    url = mesh.metrics_url("adapters")
    before = await scrape(url)
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    path = f"/metrics/{uuid.uuid4().hex[:8]}"
    hook = sink.url(path)
    request = msg.SendRequest(template_id=template, recipients=[msg.Recipient(addresses={"webhook": hook})])
    sink.answer(path, 404)  # refused for good
    refused = await herald.wait_message(app, await herald.send(app, request), all_final)
    accepted = await herald.wait_message(app, await herald.send(app, request), all_final)
    assert [refused.deliveries[0].state, accepted.deliveries[0].state] == [
        S.DELIVERY_STATE_FAILED,
        S.DELIVERY_STATE_SENT,
    ]

    after = await scrape(url)
    for outcome in ("sent", "permanent"):
        calls = "herald_provider_calls_total"
        assert (
            total(after, calls, account="webhook", outcome=outcome)
            >= total(before, calls, account="webhook", outcome=outcome) + 1
        )
    timed = "herald_provider_call_seconds_count"
    assert total(after, timed, channel="webhook", account="webhook") >= total(before, timed, account="webhook") + 2
    deliveries = "herald_adapters_deliveries_total"
    for outcome in ("sent", "failed"):
        labels = {"channel": "webhook", "category": "notification", "outcome": outcome}
        assert total(after, deliveries, **labels) >= total(before, deliveries, **labels) + 1
