"""Accounts of one channel and one priority share its traffic by weight: over 1,000 SMS split 3:1 between two
Twilio accounts (the fake checks each request as Twilio would), each account's share is within 5 points of its
weight, and every attempt names the account it went through."""

import uuid
from collections import Counter

from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg

from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.adapters.sms import PHONE, sms_template, twilio_account
from tests.helpers.client import Herald, all_final

SENDS = 1000
BATCH = 100


async def test_two_accounts_of_equal_priority_share_sms_three_to_one(herald: Herald, twilio: FakeTwilio) -> None:
    suffix = uuid.uuid4().hex[:6]
    heavy, light = twilio_account(f"twilio-heavy-{suffix}", twilio), twilio_account(f"twilio-light-{suffix}", twilio)
    heavy.weight, light.weight = 3, 1
    async with herald.provider_accounts(heavy, light):
        _, app = await herald.create_app(("sms",))
        template = await sms_template(herald)
        sends = [
            msg.SendRequest(
                template_id=template, recipients=[msg.Recipient(addresses={"sms": PHONE})], variables={"code": str(n)}
            )
            for n in range(SENDS)
        ]
        ids = []
        for start in range(0, SENDS, BATCH):
            reply = await herald.messages.SendBatch(
                msg.SendBatchRequest(requests=sends[start : start + BATCH]), metadata=app
            )
            ids += [result.response.message_id for result in reply.results]
        through: Counter[str] = Counter()
        for message_id in ids:
            [delivery] = (await herald.wait_message(app, message_id, all_final, timeout=120)).deliveries
            assert delivery.state == common_pb2.DELIVERY_STATE_SENT, delivery.reason
            through[delivery.provider] += 1
    assert through[heavy.name] + through[light.name] == SENDS, through
    assert abs(through[heavy.name] / SENDS - 0.75) <= 0.05, through
    assert abs(through[light.name] / SENDS - 0.25) <= 0.05, through
