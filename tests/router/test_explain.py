"""ExplainRouting: which channels a user would get a message on now, and why not the others."""

import uuid

import grpc
from google.protobuf import duration_pb2
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import common_pb2
from herald.v1 import directory_service_pb2 as directory
from herald.v1 import message_service_pb2 as msg
from herald.v1 import routing_service_pb2 as routing

from tests.helpers.client import Herald, all_final, bad_fields, rpc_error
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2
V = routing.ChannelVerdict


async def _template(herald: Herald, channels: list[str], fallback: list[str]) -> str:
    template_id = f"explain-{uuid.uuid4().hex[:8]}"
    template = admin.Template(
        template_id=template_id,
        category=S.CATEGORY_MARKETING,
        contents=[common_pb2.ChannelContent(channel=c, body="{}") for c in channels],
        fallback_channels=fallback,
    )
    await herald.admin_stub.CreateTemplate(admin.CreateTemplateRequest(template=template), metadata=herald.admin)
    return template_id


async def _user(herald: Herald, addresses: dict[str, str], quiet: common_pb2.QuietHours) -> str:
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    user = directory.User(user_id=user_id, addresses=addresses, timezone="UTC", quiet_hours=quiet)
    await herald.directory.UpsertUser(directory.UpsertUserRequest(user=user), metadata=herald.admin)
    return user_id


async def _explain(herald: Herald, app_id: str, template: str, user_id: str) -> dict[str, routing.ChannelVerdict]:
    reply = await herald.routing.ExplainRouting(
        routing.ExplainRoutingRequest(app_id=app_id, template_id=template, user_id=user_id), metadata=herald.admin
    )
    assert reply.category == S.CATEGORY_MARKETING
    return {v.channel: v for v in reply.verdicts}


async def test_each_channel_says_whether_it_would_be_used_and_why_not(herald: Herald, sink: WebhookSink) -> None:
    app_id, _ = await herald.create_app(("webhook", "email", "sms", "inbox"))
    template = await _template(herald, ["webhook", "email", "sms", "inbox", "slack"], ["email", "sms", "inbox"])
    user_id = await _user(
        herald,
        {"webhook": sink.url("/explain"), "email": "someone@example.com", "sms": "+8613812345678"},
        common_pb2.QuietHours(disabled=True),
    )
    await herald.directory.SetPreference(
        directory.SetPreferenceRequest(user_id=user_id, category=S.CATEGORY_MARKETING, channel="email", opted_out=True),
        metadata=herald.admin,
    )
    verdicts = await _explain(herald, app_id, template, user_id)

    assert list(verdicts) == ["webhook", "slack", "email", "sms", "inbox"]
    assert (verdicts["webhook"].outcome, verdicts["webhook"].reason) == (V.OUTCOME_SEND, "")
    assert verdicts["slack"].outcome == V.OUTCOME_BLOCKED
    assert verdicts["slack"].reason == f"app {app_id} may not send on channel 'slack'"
    assert verdicts["email"].outcome == V.OUTCOME_BLOCKED
    assert verdicts["email"].reason == f"user '{user_id}' opted out of marketing messages on email"
    assert verdicts["sms"].outcome == V.OUTCOME_SEND
    assert verdicts["sms"].address.endswith("******5678")  # masked: enough to tell numbers apart, no more
    assert (verdicts["inbox"].outcome, verdicts["inbox"].reason) == (
        V.OUTCOME_STANDBY,
        "used only if sms fails for good",
    )


async def test_frequency_caps_quiet_hours_and_missing_addresses_are_named(herald: Herald, sink: WebhookSink) -> None:
    app_id, app = await herald.create_app(("webhook", "sms"))
    template = await _template(herald, ["webhook", "sms"], [])
    rule = routing.FrequencyRule(
        category=S.CATEGORY_MARKETING,
        channel="webhook",
        app_id=app_id,
        max_deliveries=1,
        window=duration_pb2.Duration(seconds=3600),
    )
    created = await herald.routing.CreateFrequencyRule(
        routing.CreateFrequencyRuleRequest(rule=rule), metadata=herald.admin
    )
    always_quiet = common_pb2.QuietHours(start="00:00", end="23:59")
    user_id = await _user(herald, {"webhook": sink.url("/explain-cap")}, always_quiet)

    before = await _explain(herald, app_id, template, user_id)
    assert before["webhook"].outcome == V.OUTCOME_HOLD
    assert before["webhook"].reason == "quiet hours: held until 23:59 UTC"
    assert before["webhook"].HasField("release_time")
    assert before["sms"].outcome == V.OUTCOME_BLOCKED
    assert before["sms"].reason == f"no sms address: none in the request and none in the directory for user '{user_id}'"

    # Explaining counted nothing; one real send fills the cap.
    await herald.directory.UpsertUser(
        directory.UpsertUserRequest(
            user=directory.User(
                user_id=user_id,
                addresses={"webhook": sink.url("/explain-cap")},
                timezone="UTC",
                quiet_hours=common_pb2.QuietHours(disabled=True),
            )
        ),
        metadata=herald.admin,
    )
    request = msg.SendRequest(template_id=template, channels=["webhook"], recipients=[msg.Recipient(user_id=user_id)])
    sent = await herald.wait_message(app, await herald.send(app, request), all_final)
    assert sent.deliveries[0].state == S.DELIVERY_STATE_SENT
    after = await _explain(herald, app_id, template, user_id)
    assert after["webhook"].outcome == V.OUTCOME_BLOCKED
    assert after["webhook"].reason.startswith("frequency cap: at most 1 marketing deliveries on webhook per hour")
    assert created.rule_id in after["webhook"].reason


async def test_bad_requests_get_precise_errors(herald: Herald) -> None:
    app_id, _ = await herald.create_app()
    error = await rpc_error(herald.routing.ExplainRouting(routing.ExplainRoutingRequest(), metadata=herald.admin))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_fields(error)) == {"app_id", "template_id", "user_id"}

    unknown = routing.ExplainRoutingRequest(app_id=app_id, template_id="no-such-template", user_id="u")
    error = await rpc_error(herald.routing.ExplainRouting(unknown, metadata=herald.admin))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-template" in (error.details() or "")

    error = await rpc_error(herald.routing.ExplainRouting(unknown))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
