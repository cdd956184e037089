"""SREs read every gRPC method's traffic, errors and latency from each binary's /metrics, under the names
go-grpc-prometheus made conventional (dashboards and alerts expect them), and intake's messages accepted by app
and category and refused by reason."""

import asyncio

import grpc
from herald.v1 import message_service_pb2 as msg

from devmesh.mesh import Mesh
from tests.helpers.client import Herald, rpc_error
from tests.helpers.metrics import Samples, scrape, total

SEND = {"grpc_type": "unary", "grpc_service": "herald.v1.MessageService", "grpc_method": "Send"}


def _handled(samples: Samples, code: str) -> float:
    return total(samples, "grpc_server_handled_total", **SEND, grpc_code=code)


async def test_each_call_is_counted_by_its_status_and_timed(shared_mesh: tuple[Mesh, Herald]) -> None:
    mesh, herald = shared_mesh
    url = mesh.metrics_url("intake")
    app_id, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    good = msg.SendRequest(
        template_id=template, recipients=[msg.Recipient(addresses={"webhook": "https://x.example/"})]
    )
    before = await scrape(url)

    await herald.messages.Send(good, metadata=app)
    await herald.messages.Send(good, metadata=app)
    refused = await rpc_error(herald.messages.Send(msg.SendRequest(template_id=template), metadata=app))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    unknown = await rpc_error(herald.messages.Send(good, metadata=(("authorization", "Bearer nope"),)))
    assert unknown.code() == grpc.StatusCode.UNAUTHENTICATED

    # A call is counted as it ends, which may be a moment after its caller has the answer (an abort sends the
    # status first).
    timed = "grpc_server_handling_seconds_count"
    async with asyncio.timeout(10):
        while total(after := await scrape(url), timed, **SEND) - total(before, timed, **SEND) < 4:
            await asyncio.sleep(0.05)
    assert total(after, "grpc_server_started_total", **SEND) - total(before, "grpc_server_started_total", **SEND) == 4
    assert _handled(after, "OK") - _handled(before, "OK") == 2
    assert _handled(after, "INVALID_ARGUMENT") - _handled(before, "INVALID_ARGUMENT") == 1
    assert _handled(after, "UNAUTHENTICATED") - _handled(before, "UNAUTHENTICATED") == 1
    assert total(after, timed, **SEND) - total(before, timed, **SEND) == 4

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("herald_intake_messages_accepted_total", app=app_id, category="notification") == 2
    assert grew("herald_intake_messages_refused_total", reason="invalid_argument") == 1
    assert grew("herald_intake_messages_refused_total", reason="unauthenticated") == 1
    for service in ("router", "adapters", "feedback"):  # every binary's methods have the same series from the start
        methods = {dict(labels).get("grpc_service") for name, labels in await scrape(mesh.metrics_url(service))}
        assert methods - {None}, f"{service} exports no grpc_server_* series"
