"""Fallback chains: the next channel is used when the user has no address, opted out, or a delivery failed for good.

The router's part (an unusable channel hands over to the next; a chain stops at the first that works) is tested in
one process in test_routing_stage.py; here, what needs the mesh: the adapters handing a failure back, and a
recipient without a user id from Send to delivery."""

import uuid

from herald.v1 import admin_service_pb2 as admin
from herald.v1 import common_pb2, status_service_pb2
from herald.v1 import directory_service_pb2 as directory
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, Metadata, all_final, bad_fields, rpc_error
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


async def _chain_template(herald: Herald, chain: list[str], category: common_pb2.Category.ValueType) -> str:
    template_id = f"chain-{uuid.uuid4().hex[:8]}"
    contents = [common_pb2.ChannelContent(channel=c, subject="s", body='{"hello": "{{ name }}"}') for c in chain]
    template = admin.Template(template_id=template_id, category=category, contents=contents, fallback_channels=chain)
    await herald.admin_stub.CreateTemplate(admin.CreateTemplateRequest(template=template), metadata=herald.admin)
    return template_id


async def _user(herald: Herald, addresses: dict[str, str]) -> str:
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    user = directory.User(
        user_id=user_id, addresses=addresses, timezone="UTC", quiet_hours=common_pb2.QuietHours(disabled=True)
    )
    await herald.directory.UpsertUser(directory.UpsertUserRequest(user=user), metadata=herald.admin)
    return user_id


async def _send(herald: Herald, app: Metadata, template: str, user_id: str) -> status_service_pb2.Message:
    request = msg.SendRequest(
        template_id=template, recipients=[msg.Recipient(user_id=user_id)], variables={"name": "x"}
    )
    message_id = await herald.send(app, request)
    return await herald.wait_message(app, message_id, lambda m: all_final(m, 2))


def _by_channel(message: status_service_pb2.Message) -> dict[str, status_service_pb2.Delivery]:
    return {d.channel: d for d in message.deliveries}


async def test_a_delivery_that_failed_for_good_hands_over_to_the_next_channel(
    herald: Herald, sink: WebhookSink
) -> None:
    path = f"/fb/{uuid.uuid4().hex[:8]}"
    sink.answer(path, 400)  # a permanent refusal: no retry, straight to the next channel
    _, app = await herald.create_app(("webhook", "email"))
    template = await _chain_template(herald, ["webhook", "email"], S.CATEGORY_NOTIFICATION)
    user_id = await _user(herald, {"webhook": sink.url(path), "email": "someone@example.com"})
    steps = _by_channel(await _send(herald, app, template, user_id))

    assert steps["webhook"].state == S.DELIVERY_STATE_FAILED
    assert steps["webhook"].reason == "webhook endpoint answered HTTP 400; falling back to email"
    assert steps["webhook"].attempts == 1
    # The e-mail step is in the timeline with an outcome of its own.
    assert steps["email"].state not in (S.DELIVERY_STATE_PENDING, S.DELIVERY_STATE_SUPPRESSED)


async def test_a_recipient_without_user_id_needs_an_address_for_one_channel_of_the_chain(
    herald: Herald, sink: WebhookSink
) -> None:
    _, app = await herald.create_app(("email", "webhook"))
    template = await _chain_template(herald, ["email", "webhook"], S.CATEGORY_NOTIFICATION)
    only_webhook = msg.Recipient(addresses={"webhook": sink.url("/fb/anon")})
    request = msg.SendRequest(template_id=template, recipients=[only_webhook], variables={"name": "x"})
    message_id = await herald.send(app, request)
    steps = _by_channel(await herald.wait_message(app, message_id, lambda m: all_final(m, 2)))
    assert steps["webhook"].state == S.DELIVERY_STATE_SENT

    nowhere = msg.Recipient(addresses={"sms": "+8613800000000"})
    error = await rpc_error(
        herald.messages.Send(
            msg.SendRequest(template_id=template, recipients=[nowhere], variables={"name": "x"}), metadata=app
        )
    )
    assert "recipients[0].addresses" in bad_fields(error)


async def test_a_fallback_channel_without_content_is_refused(herald: Herald) -> None:
    template = admin.Template(
        template_id=f"chain-{uuid.uuid4().hex[:8]}",
        category=S.CATEGORY_NOTIFICATION,
        contents=[common_pb2.ChannelContent(channel="webhook", body="{}")],
        fallback_channels=["webhook", "sms"],
    )
    error = await rpc_error(
        herald.admin_stub.CreateTemplate(admin.CreateTemplateRequest(template=template), metadata=herald.admin)
    )
    assert bad_fields(error) == {"template.fallback_channels[1]": "channel 'sms' has no content in this template"}
