"""SMS through two real provider protocols (Twilio, Alibaba Cloud) against their fakes, with a circuit breaker per
account: when the primary keeps failing, traffic moves to the secondary within seconds; when the primary answers
again, its probe succeeds and traffic returns. Every attempt names the account it used."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as pb

from tests.adapters.channels.sms.fake_alibaba import FakeAlibaba
from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.adapters.sms import PHONE, alibaba_account, sms_template, twilio_account
from tests.helpers.client import Herald, Metadata, all_final

S = common_pb2


@pytest.fixture
async def sms_accounts(herald: Herald, twilio: FakeTwilio, alibaba: FakeAlibaba) -> AsyncIterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:6]
    primary = twilio_account(f"twilio-{suffix}", twilio)
    secondary = alibaba_account(f"alibaba-{suffix}", alibaba)
    secondary.priority = 1
    for account in (primary, secondary):
        await herald.providers.CreateProviderAccount(
            pb.CreateProviderAccountRequest(account=account), metadata=herald.admin
        )
    yield primary.name, secondary.name
    for account in (primary, secondary):
        await herald.providers.DeleteProviderAccount(
            pb.DeleteProviderAccountRequest(name=account.name), metadata=herald.admin
        )


async def _send(herald: Herald, app: Metadata, template: str, code: str) -> str:
    request = msg.SendRequest(
        template_id=template, recipients=[msg.Recipient(addresses={"sms": PHONE})], variables={"code": code}
    )
    return await herald.send(app, request)


async def test_sms_moves_to_the_secondary_while_the_primary_fails_and_returns_after(
    herald: Herald, twilio: FakeTwilio, alibaba: FakeAlibaba, sms_accounts: tuple[str, str]
) -> None:
    primary, secondary = sms_accounts
    _, app = await herald.create_app(("sms",))
    template = await sms_template(herald)

    first = await _send(herald, app, template, "1000")
    [sent] = (await herald.wait_message(app, first, all_final)).deliveries
    assert sent.state == S.DELIVERY_STATE_SENT and sent.provider == primary
    assert twilio.received[-1].form["Body"] == "Your code is 1000"

    twilio.outage = True
    messages = [await _send(herald, app, template, str(2000 + n)) for n in range(8)]
    finals = [(await herald.wait_message(app, m, all_final)).deliveries[0] for m in messages]
    assert all(d.state == S.DELIVERY_STATE_SENT for d in finals), [d.reason for d in finals]
    assert {d.provider for d in finals} == {secondary}
    assert {json.loads(p.params["TemplateParam"])["code"] for p in alibaba.received} >= {
        str(2000 + n) for n in range(8)
    }
    failed_on_primary = [e for d in finals for e in d.history if e.provider == primary]
    assert failed_on_primary and all("answered HTTP 500" in e.reason for e in failed_on_primary)
    # Now the circuit is open: new messages go straight to the secondary, the primary sees at most its probes.
    calls_before = len(twilio.received)
    more = [await _send(herald, app, template, str(4000 + n)) for n in range(8)]
    later = [(await herald.wait_message(app, m, all_final)).deliveries[0] for m in more]
    assert {(d.state, d.provider) for d in later} == {(S.DELIVERY_STATE_SENT, secondary)}
    assert len(twilio.received) - calls_before <= 2
    tripped = await herald.providers.GetProviderAccount(
        pb.GetProviderAccountRequest(name=primary), metadata=herald.admin
    )
    assert tripped.circuit_state in (pb.CIRCUIT_STATE_OPEN, pb.CIRCUIT_STATE_HALF_OPEN), "operators see it tripped"

    twilio.outage = False
    async with asyncio.timeout(30):
        while True:
            message = await _send(herald, app, template, "3000")
            [delivery] = (await herald.wait_message(app, message, all_final)).deliveries
            if delivery.provider == primary:
                break
            await asyncio.sleep(0.5)
    assert delivery.state == S.DELIVERY_STATE_SENT
    back = await herald.providers.GetProviderAccount(pb.GetProviderAccountRequest(name=primary), metadata=herald.admin)
    assert back.circuit_state == pb.CIRCUIT_STATE_CLOSED
