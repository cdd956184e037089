"""One trace shows caller -> intake -> router -> adapter -> provider -> feedback."""

import secrets
from pathlib import Path

from herald.v1 import message_service_pb2 as msg

from tests.conftest import running_mesh
from tests.helpers.client import all_final
from tests.helpers.databases import default_backend
from tests.helpers.otlp_receiver import OtlpReceiver
from tests.helpers.webhook_sink import WebhookSink


async def test_callers_traceparent_spans_all_four_services_and_the_provider_call(
    tmp_path: Path, sink: WebhookSink
) -> None:
    receiver = OtlpReceiver()
    await receiver.start()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    try:
        async with running_mesh(tmp_path, default_backend(), env) as (_, herald):
            _, app = await herald.create_app()
            template = await herald.create_template({"webhook": "{}"})
            trace_id = secrets.token_hex(16)
            traceparent = (("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"),)
            reply = await herald.messages.Send(
                msg.SendRequest(
                    template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url("/traced")})]
                ),
                metadata=app + traceparent,
            )
            await herald.wait_message(app, reply.message_id, all_final)
            services = await receiver.wait_for_services(
                trace_id, {"herald-intake", "herald-router", "herald-adapters", "herald-feedback"}
            )
            assert services == {"herald-intake", "herald-router", "herald-adapters", "herald-feedback"}
            [hit] = sink.for_path("/traced")
            assert hit.headers["traceparent"].split("-")[1] == trace_id, "the provider call must carry the trace"
            assert any(name == "POST webhook" for t, _, name in receiver.spans if t == trace_id)
    finally:
        await receiver.stop()
