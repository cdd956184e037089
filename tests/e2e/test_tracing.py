"""One trace shows caller -> intake -> router -> adapter -> provider -> feedback."""

import secrets
from pathlib import Path

import grpc
from herald.v1 import message_service_pb2 as msg
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.conftest import running_mesh
from tests.helpers.client import all_final, rpc_error
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
                    template_id=template,
                    recipients=[msg.Recipient(addresses={"webhook": sink.url("/traced") + "?token=s3cret"})],
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

            [send] = [s for _, s in receiver.exported if s.trace_id.hex() == trace_id and s.name.endswith("/Send")]
            assert send.kind == trace_pb2.Span.SPAN_KIND_SERVER
            assert (
                _attributes(send).items()
                >= {
                    "rpc.system": "grpc",
                    "rpc.service": "herald.v1.MessageService",
                    "rpc.method": "Send",
                }.items()
            )
            assert _attributes(send)["herald.message_id"] == reply.message_id, "found in Jaeger by message id"
            spans = [(service, s) for service, s in receiver.exported if s.trace_id.hex() == trace_id]
            [post] = [s for _, s in spans if s.name == "POST webhook"]
            assert post.kind == trace_pb2.Span.SPAN_KIND_CLIENT
            assert _attributes(post)["url.full"] == sink.url("/traced"), "no query: tokens travel there"
            assert _attributes(post)["server.address"] == "127.0.0.1"
            assert _int_attributes(post)["server.port"] == sink.port
            kinds = {(service, s.kind, _attributes(s).get("messaging.operation.type")) for service, s in spans}
            assert ("herald-intake", trace_pb2.Span.SPAN_KIND_PRODUCER, "send") in kinds
            assert ("herald-router", trace_pb2.Span.SPAN_KIND_CONSUMER, "process") in kinds
            assert ("herald-router", trace_pb2.Span.SPAN_KIND_PRODUCER, "send") in kinds
            delivering = [
                s
                for service, s in spans
                if service == "herald-adapters" and s.kind == trace_pb2.Span.SPAN_KIND_CONSUMER
            ]
            assert any(_attributes(s).get("herald.message_id") == reply.message_id for s in delivering)
            assert any(_attributes(s).get("herald.delivery_id", "").startswith(reply.message_id) for s in delivering)

            refused_trace = secrets.token_hex(16)
            refused = (("traceparent", f"00-{refused_trace}-{secrets.token_hex(8)}-01"),)
            error = await rpc_error(herald.messages.Send(msg.SendRequest(template_id=template), metadata=app + refused))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            await receiver.wait_for_services(refused_trace, {"herald-intake"})
            [answered] = [s for _, s in receiver.exported if s.trace_id.hex() == refused_trace]
            assert answered.status.code != trace_pb2.Status.STATUS_CODE_ERROR, (
                "the caller's mistake is not herald's error"
            )
    finally:
        await receiver.stop()


def _attributes(span: trace_pb2.Span) -> dict[str, str]:
    return {a.key: a.value.string_value for a in span.attributes}


def _int_attributes(span: trace_pb2.Span) -> dict[str, int]:
    return {a.key: a.value.int_value for a in span.attributes}
