"""Escalation until read: an inbox item that is read stops the sms step; one that is not read reaches sms on time,
and each step is a delivery of its own in GetMessage."""

import asyncio
import time

import grpc
from herald.v1 import common_pb2, status_service_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as pb
from herald.v1 import routing_service_pb2 as routing

from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.helpers.client import Herald, all_final, rpc_error
from tests.router.escalation import escalating_template, read_inbox, sms_account, sms_arrival, user_with_phone

S = common_pb2
V = routing.ChannelVerdict
DELAY = 4


async def test_reading_the_inbox_stops_the_sms_and_not_reading_it_sends_it_on_time(
    herald: Herald, twilio: FakeTwilio
) -> None:
    _, app = await herald.create_app(("inbox", "sms"))
    template = await escalating_template(herald, DELAY)
    reader_phone, ignorer_phone = "+8613800138001", "+8613800138002"
    reader, ignorer = await user_with_phone(herald, reader_phone), await user_with_phone(herald, ignorer_phone)
    account = await sms_account(herald, twilio)
    try:
        started = time.time()
        reader_message, ignorer_message = await asyncio.gather(
            *(
                herald.send(
                    app,
                    msg.SendRequest(template_id=template, recipients=[msg.Recipient(user_id=u)], variables={"n": "7"}),
                )
                for u in (reader, ignorer)
            )
        )
        # Before anything is due, GetMessage shows the plan: the inbox item, and the sms held for later.
        planned = await herald.wait_message(app, ignorer_message, lambda m: len(m.deliveries) == 2)
        held = next(d for d in planned.deliveries if d.channel == "sms")
        assert held.state == S.DELIVERY_STATE_SCHEDULED and "unless the message is read" in held.reason

        await read_inbox(herald, app, reader)
        arrived = await sms_arrival(twilio, ignorer_phone, timeout=DELAY + 30)
        assert started + DELAY - 2 <= arrived <= started + DELAY + 2, arrived - started

        ignored = await herald.wait_message(app, ignorer_message, lambda m: all_final(m, 2))
        assert {d.channel: d.state for d in ignored.deliveries} == {
            "inbox": S.DELIVERY_STATE_SENT,
            "sms": S.DELIVERY_STATE_SENT,
        }
        read = await herald.wait_message(
            app, reader_message, lambda m: all_final(m, 2) and any(d.channel == "sms" for d in m.deliveries)
        )
        stopped = next(d for d in read.deliveries if d.channel == "sms")
        assert stopped.state == S.DELIVERY_STATE_CANCELLED, stopped.reason
        assert "escalation stopped" in stopped.reason and "read at" in stopped.reason
        await asyncio.sleep(2)
        assert not [r for r in twilio.received if r.form.get("To") == reader_phone]
        assert len([r for r in twilio.received if r.form.get("To") == ignorer_phone]) == 1
    finally:
        await herald.providers.DeleteProviderAccount(
            pb.DeleteProviderAccountRequest(name=account), metadata=herald.admin
        )


async def test_explain_shows_the_escalation_plan(herald: Herald) -> None:
    app_id, _ = await herald.create_app(("inbox", "sms"))
    template = await escalating_template(herald, 600)
    user_id = await user_with_phone(herald, "+8613800138005")
    explained = await herald.routing.ExplainRouting(
        routing.ExplainRoutingRequest(app_id=app_id, template_id=template, user_id=user_id), metadata=herald.admin
    )
    verdicts = {v.channel: v for v in explained.verdicts}
    assert list(verdicts) == ["inbox", "sms"]
    assert verdicts["inbox"].outcome == V.OUTCOME_SEND
    assert verdicts["sms"].outcome == V.OUTCOME_ESCALATE
    assert verdicts["sms"].delay.seconds == 600
    assert verdicts["sms"].reason == "escalation: sent 600s after the message unless it is read by then"


async def test_cancelling_a_dispatched_message_cancels_its_waiting_escalation_step(
    herald: Herald, twilio: FakeTwilio
) -> None:
    """The inbox item is out and cannot be taken back; the sms step still waits, and a cancel stops it."""
    _, app = await herald.create_app(("inbox", "sms"))
    template = await escalating_template(herald, DELAY)
    phone = "+8613800138003"
    user = await user_with_phone(herald, phone)
    account = await sms_account(herald, twilio)
    try:
        started = time.time()
        message_id = await herald.send(
            app, msg.SendRequest(template_id=template, recipients=[msg.Recipient(user_id=user)], variables={"n": "8"})
        )
        await herald.wait_message(app, message_id, lambda m: len(m.deliveries) == 2)
        answer = await herald.messages.CancelMessage(msg.CancelMessageRequest(message_id=message_id), metadata=app)
        assert answer.already_dispatched
        cancelled = await herald.wait_message(app, message_id, lambda m: all_final(m, 2))
        states = {d.channel: (d.state, d.reason) for d in cancelled.deliveries}
        assert states["inbox"][0] == S.DELIVERY_STATE_SENT
        assert states["sms"][0] == S.DELIVERY_STATE_CANCELLED and "CancelMessage" in states["sms"][1]
        sms = next(d for d in cancelled.deliveries if d.channel == "sms")
        assert list(answer.cancelled_delivery_ids) == [sms.delivery_id]

        again = await rpc_error(
            herald.messages.CancelMessage(msg.CancelMessageRequest(message_id=message_id), metadata=app)
        )
        assert again.code() == grpc.StatusCode.FAILED_PRECONDITION, "nothing is left to stop"
        await asyncio.sleep(max(0.0, started + DELAY + 3 - time.time()))  # past the step's time
        assert not [r for r in twilio.received if r.form.get("To") == phone]
        after = await herald.status.GetMessage(
            status_service_pb2.GetMessageRequest(message_id=message_id), metadata=app
        )
        assert {d.channel: d.state for d in after.deliveries}["sms"] == S.DELIVERY_STATE_CANCELLED
    finally:
        await herald.providers.DeleteProviderAccount(
            pb.DeleteProviderAccountRequest(name=account), metadata=herald.admin
        )
