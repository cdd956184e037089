"""How a webhook delivery ends, as a support person sees it in GetMessage."""

import json
import uuid
from datetime import UTC, datetime, timedelta

from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, all_final
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


def _path() -> str:
    return f"/hook/{uuid.uuid4().hex[:8]}"


async def test_retryable_error_is_retried_then_sent(herald: Herald, sink: WebhookSink) -> None:
    path = _path()
    sink.answer(path, 503)
    _, _, message = await herald.send_and_wait(msg.Recipient(addresses={"webhook": sink.url(path)}))
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_SENT
    assert delivery.attempts == 2
    assert len(sink.for_path(path)) == 2
    retry = [h for h in delivery.history if h.state == S.DELIVERY_STATE_PENDING and h.attempt == 1]
    assert retry and "HTTP 503" in retry[0].reason and "retrying" in retry[0].reason


async def test_permanent_error_fails_with_the_endpoints_answer(herald: Herald, sink: WebhookSink) -> None:
    path = _path()
    sink.answer(path, 404)
    _, _, message = await herald.send_and_wait(msg.Recipient(addresses={"webhook": sink.url(path)}))
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_FAILED
    assert delivery.reason == "webhook endpoint answered HTTP 404"
    assert delivery.attempts == 1 and delivery.provider == "webhook"


async def test_webhook_to_a_private_address_is_refused(herald: Herald, sink: WebhookSink) -> None:
    # The mesh allows only the host "127.0.0.1"; "localhost" is the same machine under another name.
    url = sink.url(_path()).replace("127.0.0.1", "localhost")
    _, _, message = await herald.send_and_wait(msg.Recipient(addresses={"webhook": url}))
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_FAILED
    assert "non-public address" in delivery.reason and "HERALD_WEBHOOK_ALLOWED_HOSTS" in delivery.reason


async def test_channel_without_a_provider_account_fails_visibly(herald: Herald) -> None:
    _, _, message = await herald.send_and_wait(msg.Recipient(addresses={"email": "ann@example.com"}), ("email",))
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_FAILED
    assert delivery.reason == "no email provider account is configured"


async def test_message_past_expire_at_is_not_retried(herald: Herald, sink: WebhookSink) -> None:
    path = _path()
    sink.answer(path, (503, {"Retry-After": "3"}))
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    request = msg.SendRequest(template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})])
    request.expire_at.FromDatetime(datetime.now(UTC) + timedelta(seconds=1.5))
    message_id = await herald.send(app, request)
    message = await herald.wait_message(app, message_id, all_final)
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_EXPIRED
    # Retry-After (3 s) would land after expire_at: it expires at once, saying why the one attempt failed.
    assert delivery.reason == "expire_at passed while retrying; attempt 1 failed: webhook endpoint answered HTTP 503"
    assert len(sink.for_path(path)) == 1, "no retry after expire_at may reach the endpoint"


async def test_a_variable_cannot_add_fields_to_a_json_body(herald: Herald, sink: WebhookSink) -> None:
    path = _path()
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": '{"text": "Order {{ order }} shipped"}'})
    order = 'a","admin":true,"x":"'
    request = msg.SendRequest(
        template_id=template,
        variables={"order": order},
        recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})],
    )
    await herald.send(app, request)
    [received] = await sink.wait_for(path)
    assert json.loads(received.body) == {"text": f"Order {order} shipped"}
    assert received.signature_ok and received.headers["Content-Type"] == "application/json"
