"""ExplainRouting's answers, in one process: Explain over the router's tables and caps (tests/router/stage.py), with
the app and the template intake would give. Asking intake over gRPC, and the refusals a caller gets, stay in the
mesh test (test_explain.py)."""

from herald.v1 import admin_service_pb2, common_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import routing_service_pb2 as routing

from herald.services.router.explain import Explainer
from tests.router.stage import RouterStage, message, router_stage

S = common_pb2
V = routing.ChannelVerdict
HOOK = "https://hooks.example/u"


class Intake:
    """The app and the template Explain asks intake for, as intake's AdminService would answer."""

    def __init__(self, app: admin_service_pb2.App, template: admin_service_pb2.Template) -> None:
        self._app, self._template = app, template

    async def app(self, app_id: str) -> admin_service_pb2.App:
        return self._app

    async def template(self, template_id: str) -> admin_service_pb2.Template:
        return self._template


def _explainer(stage: RouterStage, channels: list[str], fallback: list[str], allowed: list[str]) -> Explainer:
    template = admin_service_pb2.Template(
        template_id="explained",
        category=S.CATEGORY_MARKETING,
        contents=[common_pb2.ChannelContent(channel=c, body="{}") for c in channels],
        fallback_channels=fallback,
    )
    return Explainer(
        stage.db,
        stage.suppressions,
        stage.caps,
        Intake(admin_service_pb2.App(app_id="app_1", allowed_channels=allowed), template),
    )


async def _explain(explainer: Explainer, user_id: str) -> dict[str, routing.ChannelVerdict]:
    reply = await explainer.explain(
        routing.ExplainRoutingRequest(app_id="app_1", template_id="explained", user_id=user_id)
    )
    assert reply.category == S.CATEGORY_MARKETING
    return {v.channel: v for v in reply.verdicts}


async def test_explain_says_whether_each_channel_would_be_used_and_why_not(database_url: str) -> None:
    """Was test_explain.py's test_each_channel_says_whether_it_would_be_used_and_why_not."""
    async with router_stage(database_url) as stage:
        addresses = {"webhook": HOOK, "email": "someone@example.com", "sms": "+8613812345678"}
        user = await stage.user(addresses, quiet=common_pb2.QuietHours(disabled=True), timezone="UTC")
        await stage.opt_out(user, S.CATEGORY_MARKETING, "email")
        explainer = _explainer(
            stage,
            ["webhook", "email", "sms", "inbox", "slack"],
            ["email", "sms", "inbox"],
            ["webhook", "email", "sms", "inbox"],
        )
        verdicts = await _explain(explainer, user)

        assert list(verdicts) == ["webhook", "slack", "email", "sms", "inbox"]
        assert (verdicts["webhook"].outcome, verdicts["webhook"].reason) == (V.OUTCOME_SEND, "")
        assert verdicts["slack"].outcome == V.OUTCOME_BLOCKED
        assert verdicts["slack"].reason == "app app_1 may not send on channel 'slack'"
        assert verdicts["email"].outcome == V.OUTCOME_BLOCKED
        assert verdicts["email"].reason == f"user '{user}' opted out of marketing messages on email"
        assert verdicts["sms"].outcome == V.OUTCOME_SEND
        assert verdicts["sms"].address.endswith("******5678")  # masked: enough to tell numbers apart, no more
        assert (verdicts["inbox"].outcome, verdicts["inbox"].reason) == (
            V.OUTCOME_STANDBY,
            "used only if sms fails for good",
        )


async def test_explain_names_caps_quiet_hours_and_missing_addresses_and_counts_nothing(database_url: str) -> None:
    """Was test_explain.py's test_frequency_caps_quiet_hours_and_missing_addresses_are_named: the real send that
    fills the cap is routed by the stage."""
    async with router_stage(database_url) as stage:
        rule_id = await stage.cap(1, 3600, S.CATEGORY_MARKETING, "webhook", app_id="app_1")
        always_quiet = common_pb2.QuietHours(start="00:00", end="23:59")
        user = await stage.user({"webhook": HOOK}, quiet=always_quiet, timezone="UTC")
        explainer = _explainer(stage, ["webhook", "sms"], [], ["webhook", "sms"])

        before = await _explain(explainer, user)
        assert before["webhook"].outcome == V.OUTCOME_HOLD
        assert before["webhook"].reason == "quiet hours: held until 23:59 UTC"
        assert before["webhook"].HasField("release_time")
        assert before["sms"].outcome == V.OUTCOME_BLOCKED
        assert (
            before["sms"].reason == f"no sms address: none in the request and none in the directory for user '{user}'"
        )

        # Explaining counted nothing; one real send (by a user out of quiet hours) fills the cap.
        awake = await stage.user({"webhook": HOOK}, quiet=common_pb2.QuietHours(disabled=True), timezone="UTC")
        sent = message({"webhook": "{}"}, msg.Recipient(user_id=awake), category=S.CATEGORY_MARKETING)
        [event] = await stage.settled(await stage.send(sent))
        assert event.state == S.DELIVERY_STATE_PENDING
        after = await _explain(explainer, awake)
        assert after["webhook"].outcome == V.OUTCOME_BLOCKED
        assert after["webhook"].reason.startswith("frequency cap: at most 1 marketing deliveries on webhook per hour")
        assert rule_id in after["webhook"].reason
