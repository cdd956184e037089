"""One trace shows caller -> intake -> router -> adapter -> provider -> feedback; a provider's receipt, which
comes without trace context, is a span of its own linked to the delivery's trace."""

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as pb
from opentelemetry.proto.trace.v1 import trace_pb2

from devmesh.mesh import Mesh
from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.adapters.sms import PHONE, sms_template, twilio_account
from tests.conftest import running_mesh
from tests.helpers.client import Herald, all_final, rpc_error
from tests.helpers.databases import default_backend
from tests.helpers.otlp_receiver import OtlpReceiver, sampled_trace
from tests.helpers.webhook_sink import WebhookSink

Traced = tuple[OtlpReceiver, Mesh, Herald]


@pytest.fixture(scope="module")
async def traced(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Traced]:
    """A mesh exporting its spans to an OTLP receiver, as to Jaeger's collector."""
    receiver = OtlpReceiver()
    await receiver.start()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    try:
        async with running_mesh(tmp_path_factory.mktemp("traced"), default_backend(), env) as (mesh, herald):
            yield receiver, mesh, herald
    finally:
        await receiver.stop()


async def test_callers_traceparent_spans_all_four_services_and_the_provider_call(
    traced: Traced, sink: WebhookSink
) -> None:
    receiver, _, herald = traced
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
    await receiver.wait_for_span(trace_id, "POST webhook")

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
    async with asyncio.timeout(30):  # the router's consumer span ends once its batch is settled: it may come last
        while not _consumed(receiver, "herald-router", trace_id):
            await asyncio.sleep(0.1)
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
    async with asyncio.timeout(30):
        while not _consumed(receiver, "herald-adapters", trace_id, reply.message_id):
            await asyncio.sleep(0.1)
    delivering = [
        s
        for service, s in receiver.exported
        if service == "herald-adapters" and s.trace_id.hex() == trace_id and s.kind == trace_pb2.Span.SPAN_KIND_CONSUMER
    ]
    assert any(_attributes(s).get("herald.message_id") == reply.message_id for s in delivering)
    assert any(_attributes(s).get("herald.delivery_id", "").startswith(reply.message_id) for s in delivering)

    # A provider's 5xx: the attempt's CLIENT span is an error and names it; the retry that succeeds is not.
    retried_trace = secrets.token_hex(16)
    sink.answer("/flaky", 503)
    retried = await herald.messages.Send(
        msg.SendRequest(template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url("/flaky")})]),
        metadata=app + sampled_trace(retried_trace),
    )
    await herald.wait_message(app, retried.message_id, all_final)
    async with asyncio.timeout(30):
        while len(calls := _spans(receiver, retried_trace, "POST webhook")) < 2:
            await asyncio.sleep(0.1)
    by_status = {_int_attributes(s)["http.response.status_code"]: s for s in calls}
    assert by_status[503].status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert _attributes(by_status[503])["error.type"] == "503"
    assert by_status[200].status.code != trace_pb2.Status.STATUS_CODE_ERROR
    assert "error.type" not in _attributes(by_status[200])

    refused_trace = secrets.token_hex(16)
    refused = (("traceparent", f"00-{refused_trace}-{secrets.token_hex(8)}-01"),)
    error = await rpc_error(herald.messages.Send(msg.SendRequest(template_id=template), metadata=app + refused))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    await receiver.wait_for_services(refused_trace, {"herald-intake"})
    # The call's own span; its audit record's publish may follow it in the same trace.
    [answered] = [
        s
        for _, s in receiver.exported
        if s.trace_id.hex() == refused_trace and s.kind == trace_pb2.Span.SPAN_KIND_SERVER
    ]
    assert answered.status.code != trace_pb2.Status.STATUS_CODE_ERROR, "the caller's mistake is not herald's error"


async def test_concurrent_sends_each_keep_their_own_trace_through_the_router(traced: Traced, sink: WebhookSink) -> None:
    """Concurrent Sends may travel to the router in one publish (herald/libs/bus); each is still routed and
    delivered in its caller's trace."""
    receiver, _, herald = traced
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    traces = [secrets.token_hex(16) for _ in range(20)]
    request = msg.SendRequest(
        template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url("/concurrent")})]
    )
    replies = await asyncio.gather(*(herald.messages.Send(request, metadata=app + sampled_trace(t)) for t in traces))
    for reply in replies:
        await herald.wait_message(app, reply.message_id, all_final)
    for trace_id, reply in zip(traces, replies, strict=True):
        async with asyncio.timeout(30):
            while not (
                _consumed(receiver, "herald-router", trace_id)
                and _consumed(receiver, "herald-adapters", trace_id, reply.message_id)
            ):
                await asyncio.sleep(0.1)

    # Calls without trace context start a trace each, not one they share.
    own = f"/own-{secrets.token_hex(4)}"
    plain = msg.SendRequest(template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url(own)})])
    untraced = await asyncio.gather(*(herald.messages.Send(plain, metadata=app) for _ in range(5)))
    for reply in untraced:
        await herald.wait_message(app, reply.message_id, all_final)
    assert len({hit.headers["traceparent"].split("-")[1] for hit in sink.for_path(own)}) == 5


async def test_a_receipt_is_a_server_span_linked_to_the_deliverys_trace(traced: Traced, twilio: FakeTwilio) -> None:
    """And a recipient's text back is a server span too: every request from outside is one (adapters/endpoint.py)."""
    receiver, mesh, herald = traced
    account = f"twilio-{uuid.uuid4().hex[:6]}"
    await herald.providers.CreateProviderAccount(
        pb.CreateProviderAccountRequest(
            account=twilio_account(
                account, twilio, status_callback_url=mesh.receipts_url(account), inbound_url=mesh.inbound_url(account)
            )
        ),
        metadata=herald.admin,
    )
    _, app = await herald.create_app(("sms",))
    trace_id = secrets.token_hex(16)
    request = msg.SendRequest(
        template_id=await sms_template(herald),
        recipients=[msg.Recipient(addresses={"sms": PHONE})],
        variables={"code": "7"},
    )
    message_id = (await herald.messages.Send(request, metadata=app + sampled_trace(trace_id))).message_id
    await herald.wait_message(app, message_id, all_final)
    assert await twilio.report(twilio.issued[-1], "delivered") == 200
    [delivery] = (
        await herald.wait_message(
            app, message_id, lambda m: m.deliveries[0].state == common_pb2.DELIVERY_STATE_DELIVERED
        )
    ).deliveries

    async with asyncio.timeout(30):
        while not (receipts := [s for _, s in receiver.exported if s.name == "POST /v1/receipts/{account}"]):
            await asyncio.sleep(0.1)
    [receipt] = receipts
    assert receipt.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert receipt.trace_id.hex() != trace_id, "the provider's request starts a trace of its own"
    assert _attributes(receipt)["http.route"] == "/v1/receipts/{account}"
    assert _int_attributes(receipt)["http.response.status_code"] == 200
    [link] = receipt.links
    assert link.trace_id.hex() == trace_id, "Jaeger leads from the receipt to the delivery's trace"
    assert {a.key: a.value.string_value for a in link.attributes} == {"herald.delivery_id": delivery.delivery_id}

    assert (await twilio.text(mesh.inbound_url(account), PHONE, "HELP"))[0] == 200
    async with asyncio.timeout(30):
        while not (replies := [s for _, s in receiver.exported if s.name == "POST /v1/inbound/{account}"]):
            await asyncio.sleep(0.1)
    [reply] = replies
    assert reply.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert _int_attributes(reply)["http.response.status_code"] == 200


def _consumed(receiver: OtlpReceiver, service: str, trace_id: str, message_id: str = "") -> bool:
    """Whether `service` worked on the message (any, if not named) in this trace. A consumer span ends, and is
    exported, only once its whole batch is settled, so it may come after the trace's other spans."""
    return any(
        name == service
        and s.trace_id.hex() == trace_id
        and s.kind == trace_pb2.Span.SPAN_KIND_CONSUMER
        and (not message_id or _attributes(s).get("herald.message_id") == message_id)
        for name, s in receiver.exported
    )


def _spans(receiver: OtlpReceiver, trace_id: str, name: str) -> list[trace_pb2.Span]:
    return [s for _, s in receiver.exported if s.trace_id.hex() == trace_id and s.name == name]


def _attributes(span: trace_pb2.Span) -> dict[str, str]:
    return {a.key: a.value.string_value for a in span.attributes}


def _int_attributes(span: trace_pb2.Span) -> dict[str, int]:
    return {a.key: a.value.int_value for a in span.attributes}
