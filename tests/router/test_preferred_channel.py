"""A user's preferred channel picks among the template's channels when the sender names none; a sender who names
channels gets those."""

import uuid

from herald.v1 import common_pb2, directory_service_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import routing_service_pb2 as routing

from tests.helpers.client import Herald, all_final, bad_fields, rpc_error
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2
V = routing.ChannelVerdict


async def test_the_preferred_channel_is_used_unless_the_sender_names_channels(
    herald: Herald, sink: WebhookSink
) -> None:
    app_id, app = await herald.create_app(("webhook", "inbox"))
    template = await herald.create_template({"webhook": "{}", "inbox": "hello"})
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    user = directory_service_pb2.User(
        user_id=user_id, addresses={"webhook": sink.url(f"/preferred/{user_id}")}, preferred_channel="inbox"
    )
    await herald.directory.UpsertUser(directory_service_pb2.UpsertUserRequest(user=user), metadata=herald.admin)
    stored = await herald.directory.GetUser(
        directory_service_pb2.GetUserRequest(user_id=user_id), metadata=herald.admin
    )
    assert stored.preferred_channel == "inbox"

    recipient = msg.Recipient(user_id=user_id)
    chosen = await herald.send(app, msg.SendRequest(template_id=template, recipients=[recipient]))
    named = await herald.send(
        app, msg.SendRequest(template_id=template, recipients=[recipient], channels=["webhook", "inbox"])
    )
    by_preference = await herald.wait_message(app, chosen, all_final)
    assert [(d.channel, d.state) for d in by_preference.deliveries] == [("inbox", S.DELIVERY_STATE_SENT)]
    as_named = await herald.wait_message(app, named, lambda m: all_final(m, 2))
    assert sorted(d.channel for d in as_named.deliveries) == ["inbox", "webhook"]

    explained = await herald.routing.ExplainRouting(
        routing.ExplainRoutingRequest(app_id=app_id, template_id=template, user_id=user_id), metadata=herald.admin
    )
    verdicts = {v.channel: v for v in explained.verdicts}
    assert verdicts["inbox"].outcome == V.OUTCOME_SEND
    assert (verdicts["webhook"].outcome, verdicts["webhook"].reason) == (V.OUTCOME_BLOCKED, "the user prefers inbox")


async def test_a_preferred_channel_herald_does_not_know_is_refused(herald: Herald) -> None:
    user = directory_service_pb2.User(user_id="u-odd", preferred_channel="pigeon")
    error = await rpc_error(
        herald.directory.UpsertUser(directory_service_pb2.UpsertUserRequest(user=user), metadata=herald.admin)
    )
    assert "user.preferred_channel" in bad_fields(error)
