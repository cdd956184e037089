"""Planning, in one process: which of a message's channels go out at once, which wait in a fallback chain or for
an escalation step, and a user's preferred channel."""

from datetime import UTC, datetime, timedelta

from herald.v1 import admin_service_pb2, common_pb2
from herald.v1 import message_service_pb2 as msg

from herald.internal.v1 import work_pb2
from herald.services.router import jobs, tables

ADDRESSES = {"webhook": "https://example.com/h", "sms": "+15550100", "email": "u1@example.com"}


def _message(channels: list[str], fallback: list[str] | None = None, named: bool = False) -> work_pb2.AcceptedMessage:
    template = admin_service_pb2.Template(
        template_id="t",
        contents=[common_pb2.ChannelContent(channel=c, subject="Hi", body="Hello {{ name }}") for c in ADDRESSES],
        fallback_channels=fallback or [],
    )
    recipient = msg.Recipient(user_id="u1", addresses=ADDRESSES)
    return work_pb2.AcceptedMessage(
        message_id="msg_1",
        template=template,
        recipients=[recipient],
        channels=channels,
        channels_named=named,
        variables={"name": "Ada"},
    )


def _user(preferred: str) -> tables.User:
    return tables.User(
        user_id="u1", addresses={}, timezone="", locale="", update_time=datetime.now(UTC), preferred_channel=preferred
    )


def _channels(plan: jobs.Plan) -> list[list[str]]:
    return [[job.channel for job, _ in chain.steps] for chain in plan.chains]


def test_channels_outside_the_fallback_chain_go_out_alone_and_the_chain_in_the_templates_order() -> None:
    plan = jobs.plan(_message(["webhook", "sms", "email"], fallback=["email", "sms"]), {})
    assert _channels(plan) == [["webhook"], ["email", "sms"]]
    assert not plan.escalations
    [webhook], [email, sms] = ([job for job, _ in c.steps] for c in plan.chains)
    assert webhook.body == email.body == sms.body == "Hello Ada"
    assert (webhook.address, email.address, sms.address) == (ADDRESSES["webhook"], ADDRESSES["email"], ADDRESSES["sms"])
    assert len({webhook.delivery_id, email.delivery_id, sms.delivery_id}) == 3


def test_a_chain_is_linked_and_each_next_step_carries_the_rest() -> None:
    [chain] = jobs.plan(_message(["webhook", "sms", "email"], fallback=["webhook", "sms", "email"]), {}).chains
    first = jobs.link([job for job, _ in chain.steps])
    assert [j.channel for j in first.fallback] == ["sms", "email"]
    second = jobs.next_in_chain(first)
    assert (second.channel, [j.channel for j in second.fallback]) == ("sms", ["email"])
    third = jobs.next_in_chain(second)
    assert (third.channel, list(third.fallback)) == ("email", [])


def test_the_same_message_always_plans_the_same_delivery_ids() -> None:
    def ids() -> list[str]:
        return [j.delivery_id for c in jobs.plan(_message(["webhook", "sms"]), {}).chains for j, _ in c.steps]

    assert ids() == ids()


def test_the_preferred_channel_replaces_the_others_unless_the_sender_names_channels() -> None:
    users = {"u1": _user("sms")}
    assert _channels(jobs.plan(_message(["webhook", "sms", "email"], fallback=["email"]), users)) == [["sms", "email"]]
    assert _channels(jobs.plan(_message(["webhook", "sms"], named=True), users)) == [["webhook"], ["sms"]]
    # A preferred channel the message does not have changes nothing.
    assert _channels(jobs.plan(_message(["webhook", "email"]), users)) == [["webhook"], ["email"]]


def test_an_escalation_channel_waits_its_delay_and_is_stopped_by_the_deliveries_before_it() -> None:
    message = _message(["webhook", "sms"])
    message.template.escalation.add(channel="sms").delay.FromTimedelta(timedelta(minutes=5))
    plan = jobs.plan(message, {"u1": _user("sms")})
    assert _channels(plan) == [["webhook"]]  # the preferred channel is not taken out of its escalation step
    [escalation] = plan.escalations
    (job, unrenderable), first = escalation.step, plan.chains[0].steps[0][0]
    assert (job.channel, escalation.delay, unrenderable) == ("sms", timedelta(minutes=5), "")
    assert list(job.stop_on) == [first.delivery_id]


def test_a_sender_naming_only_escalation_channels_sends_them_at_once() -> None:
    message = _message(["sms"], named=True)
    message.template.escalation.add(channel="sms").delay.FromTimedelta(timedelta(minutes=5))
    plan = jobs.plan(message, {})
    assert (_channels(plan), plan.escalations) == ([["sms"]], [])


def test_a_step_without_content_for_its_channel_says_why_it_cannot_be_rendered() -> None:
    message = _message(["webhook"])
    message.template.contents.add(channel="fcm", body="x", locale="de")
    message.channels.append("fcm")
    plan = jobs.plan(message, {})
    [[(_, fine)], [(_, unrenderable)]] = [c.steps for c in plan.chains]
    assert fine == ""
    assert unrenderable == "template has no fcm content for locale '' and no default"
