"""Escalation until read: an inbox item that is read stops the sms step; one that is not read reaches sms on time,
and each step is a delivery of its own in GetMessage."""

import asyncio
import time

from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as pb
from herald.v1 import routing_service_pb2 as routing

from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.helpers.client import Herald, all_final
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
