"""Status webhooks out: an app's own messages' status events POSTed to its URL, signed so that the Standard Webhooks
library's verifier accepts them, retried while the URL fails, never to a private address, and signed by both
secrets while one is rotated out."""

import json
import uuid
from typing import Any

import grpc
import standardwebhooks
from google.protobuf import duration_pb2
from herald.v1 import admin_service_pb2 as pb
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, all_final, bad_fields, rpc_error
from tests.helpers.webhook_sink import Received, WebhookSink


def verified(secret: str, received: Received) -> dict[str, Any]:
    """What the app's receiver reads, once the library has checked the signature (it raises if it does not)."""
    payload: dict[str, Any] = standardwebhooks.Webhook(secret).verify(received.body, received.headers)
    return payload


async def _app_with_webhook(herald: Herald, url: str) -> tuple[str, tuple[tuple[str, str], ...], str]:
    app_id, app = await herald.create_app()
    set_ = await herald.admin_stub.SetStatusWebhook(
        pb.SetStatusWebhookRequest(webhook=pb.StatusWebhook(app_id=app_id, url=url)), metadata=herald.admin
    )
    assert set_.secret.startswith("whsec_")
    assert set_.webhook.url == url
    return app_id, app, set_.secret


async def _send(herald: Herald, app: tuple[tuple[str, str], ...], sink: WebhookSink) -> str:
    template = await herald.create_template({"webhook": "{}"})
    to = sink.url(f"/delivered/{uuid.uuid4().hex[:8]}")
    message_id = await herald.send(
        app, msg.SendRequest(template_id=template, recipients=[msg.Recipient(addresses={"webhook": to})])
    )
    await herald.wait_message(app, message_id, all_final)
    return message_id


async def test_each_status_event_arrives_signed_and_the_library_verifies_it(herald: Herald, sink: WebhookSink) -> None:
    path = f"/status/{uuid.uuid4().hex[:8]}"
    _, app, secret = await _app_with_webhook(herald, sink.url(path))
    message_id = await _send(herald, app, sink)
    posts = await sink.wait_for(path, 2)
    payloads = {verified(secret, post)["type"]: verified(secret, post) for post in posts}
    assert set(payloads) == {"delivery.pending", "delivery.sent"}
    sent = payloads["delivery.sent"]["data"]
    assert (sent["messageId"], sent["channel"], sent["state"]) == (message_id, "webhook", "DELIVERY_STATE_SENT")
    assert {post.headers["webhook-id"] for post in posts} == {p["data"]["eventId"] for p in payloads.values()}
    # Another app's events never reach it.
    _, other = await herald.create_app()
    await _send(herald, other, sink)
    assert len(sink.for_path(path)) == 2


async def test_an_endpoint_answering_503_gets_the_event_again(herald: Herald, sink: WebhookSink) -> None:
    path = f"/status/{uuid.uuid4().hex[:8]}"
    sink.answer(path, 503)
    app_id, app, secret = await _app_with_webhook(herald, sink.url(path))
    await herald.admin_stub.SetStatusWebhook(
        pb.SetStatusWebhookRequest(
            webhook=pb.StatusWebhook(app_id=app_id, url=sink.url(path), states=[common_pb2.DELIVERY_STATE_SENT])
        ),
        metadata=herald.admin,
    )
    await _send(herald, app, sink)
    refused, taken = await sink.wait_for(path, 2)
    assert refused.headers["webhook-id"] == taken.headers["webhook-id"]
    assert verified(secret, taken)["type"] == "delivery.sent"


async def test_a_private_address_is_refused(herald: Herald) -> None:
    app_id, _ = await herald.create_app()
    for url in ("http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data", "ftp://example.com/x"):
        error = await rpc_error(
            herald.admin_stub.SetStatusWebhook(
                pb.SetStatusWebhookRequest(webhook=pb.StatusWebhook(app_id=app_id, url=url)), metadata=herald.admin
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, url
        assert "webhook.url" in bad_fields(error), url


async def test_while_a_secret_is_rotated_out_both_sign(herald: Herald, sink: WebhookSink) -> None:
    path = f"/status/{uuid.uuid4().hex[:8]}"
    app_id, app, old = await _app_with_webhook(herald, sink.url(path))
    rotated = await herald.admin_stub.RotateStatusWebhookSecret(
        pb.RotateStatusWebhookSecretRequest(app_id=app_id, grace_period=duration_pb2.Duration(seconds=3600)),
        metadata=herald.admin,
    )
    assert rotated.secret != old
    await _send(herald, app, sink)
    for post in await sink.wait_for(path, 2):
        assert verified(old, post) == verified(rotated.secret, post) == json.loads(post.body)
    webhook = await herald.admin_stub.GetStatusWebhook(pb.GetStatusWebhookRequest(app_id=app_id), metadata=herald.admin)
    assert webhook.url == sink.url(path)
    await herald.admin_stub.DeleteStatusWebhook(pb.DeleteStatusWebhookRequest(app_id=app_id), metadata=herald.admin)
    missing = await rpc_error(
        herald.admin_stub.GetStatusWebhook(pb.GetStatusWebhookRequest(app_id=app_id), metadata=herald.admin)
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
