"""An account's rate limit paces the calls herald makes to the provider, instead of learning the limit from its
429s: a burst of texts goes out at the account's rate, every one of them SENT."""

import time
import uuid

from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as pb

from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.adapters.sms import PHONE, sms_template, twilio_account
from tests.helpers.client import Herald, all_final

RATE, TEXTS = 5.0, 15


async def test_a_burst_goes_out_at_the_accounts_rate(herald: Herald, twilio: FakeTwilio) -> None:
    account = twilio_account(f"twilio-{uuid.uuid4().hex[:6]}", twilio)
    account.rate_limit_per_second = RATE
    await herald.providers.CreateProviderAccount(
        pb.CreateProviderAccountRequest(account=account), metadata=herald.admin
    )
    try:
        _, app = await herald.create_app(("sms",))
        template = await sms_template(herald)
        started = time.monotonic()
        sent = [
            await herald.send(
                app,
                msg.SendRequest(
                    template_id=template,
                    recipients=[msg.Recipient(addresses={"sms": PHONE})],
                    variables={"code": str(n)},
                ),
            )
            for n in range(TEXTS)
        ]
        finals = [(await herald.wait_message(app, m, all_final)).deliveries[0] for m in sent]
        elapsed = time.monotonic() - started
    finally:
        await herald.providers.DeleteProviderAccount(
            pb.DeleteProviderAccountRequest(name=account.name), metadata=herald.admin
        )
    assert {(d.state, d.provider) for d in finals} == {(common_pb2.DELIVERY_STATE_SENT, account.name)}
    # A burst of one second's worth at once, then one every 1/RATE s.
    assert elapsed >= (TEXTS - RATE) / RATE * 0.9
    assert len(twilio.received) == TEXTS
