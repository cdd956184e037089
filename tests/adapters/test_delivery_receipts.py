"""Delivery receipts: the providers' own status reports, posted to herald-adapters' HTTP endpoint and checked for
authenticity, move a delivery from SENT to DELIVERED or FAILED; a forged report changes nothing."""

import uuid
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from herald.v1 import common_pb2, status_service_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as pb

from devmesh.mesh import Mesh
from tests.adapters.channels.sms.fake_alibaba import FakeAlibaba
from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.adapters.sms import PHONE, alibaba_account, sms_template, twilio_account
from tests.conftest import PROVIDER_ENV
from tests.helpers.client import Herald, Metadata, all_final
from tests.helpers.metrics import scrape, total

S = common_pb2
RECEIPT_TOKEN = PROVIDER_ENV["HERALD_PROVIDER_TEST_SECRET"]


@pytest.fixture
async def account(
    request: pytest.FixtureRequest, shared_mesh: tuple[Mesh, Herald], twilio: FakeTwilio, alibaba: FakeAlibaba
) -> AsyncIterator[str]:
    """The only SMS account while the test runs: Twilio or Alibaba, set up to report delivery to herald."""
    mesh, herald = shared_mesh
    name = f"{request.param}-{uuid.uuid4().hex[:6]}"
    if request.param == "twilio":
        account = twilio_account(name, twilio, status_callback_url=mesh.receipts_url(name))
    else:
        account = alibaba_account(name, alibaba, receipt_token="HERALD_PROVIDER_TEST_SECRET")
    await herald.providers.CreateProviderAccount(
        pb.CreateProviderAccountRequest(account=account), metadata=herald.admin
    )
    yield name
    await herald.providers.DeleteProviderAccount(pb.DeleteProviderAccountRequest(name=name), metadata=herald.admin)


async def _sent(herald: Herald, app: Metadata, template: str) -> str:
    message_id = await herald.send(
        app,
        msg.SendRequest(
            template_id=template, recipients=[msg.Recipient(addresses={"sms": PHONE})], variables={"code": "7"}
        ),
    )
    [delivery] = (await herald.wait_message(app, message_id, all_final)).deliveries
    assert delivery.state == S.DELIVERY_STATE_SENT, delivery.reason
    return message_id


def _in(state: common_pb2.DeliveryState.ValueType) -> Callable[[status_service_pb2.Message], bool]:
    return lambda message: message.deliveries[0].state == state


async def _report(
    mesh: Mesh, twilio: FakeTwilio, alibaba: FakeAlibaba, account: str, delivered: bool, token: str = ""
) -> int:
    """The provider's report on the last SMS it took; `token` forges it (signs or addresses it with another)."""
    if account.startswith("twilio"):
        status, code = ("delivered", "") if delivered else ("undelivered", "30003")
        return await twilio.report(twilio.issued[-1], status, code, signed_with=token)
    address = f"{mesh.receipts_url(account)}?token={token or RECEIPT_TOKEN}"
    if delivered:
        return await alibaba.report(address, alibaba.issued[-1])
    return await alibaba.report(address, alibaba.issued[-1], success=False, err_code="MK:0001")


@pytest.mark.parametrize("account", ["twilio", "alibaba"], indirect=True)
async def test_a_delivery_report_moves_the_sms_to_delivered(
    shared_mesh: tuple[Mesh, Herald], twilio: FakeTwilio, alibaba: FakeAlibaba, account: str
) -> None:
    mesh, herald = shared_mesh
    _, app = await herald.create_app(("sms",))
    message_id = await _sent(herald, app, await sms_template(herald))
    if account.startswith("twilio"):  # Twilio reports the steps on the way too; they change nothing
        assert await twilio.report(twilio.issued[-1], "sent") == 200

    assert await _report(mesh, twilio, alibaba, account, delivered=True) == 200
    counted = await scrape(mesh.metrics_url("adapters"))
    assert total(counted, "herald_receipts_total", account=account, outcome="delivered") == 1, "SREs see receipts"

    [delivery] = (await herald.wait_message(app, message_id, _in(S.DELIVERY_STATE_DELIVERED))).deliveries
    assert [(h.state, h.provider) for h in delivery.history][-2:] == [
        (S.DELIVERY_STATE_SENT, account),
        (S.DELIVERY_STATE_DELIVERED, account),
    ]
    # Providers repeat reports: the repeat is taken and changes nothing.
    assert await _report(mesh, twilio, alibaba, account, delivered=True) == 200
    again = await herald.status.GetMessage(status_service_pb2.GetMessageRequest(message_id=message_id), metadata=app)
    assert len(again.deliveries[0].history) == len(delivery.history)


@pytest.mark.parametrize("account", ["twilio", "alibaba"], indirect=True)
async def test_an_undelivered_report_fails_the_sms_with_the_providers_reason(
    shared_mesh: tuple[Mesh, Herald], twilio: FakeTwilio, alibaba: FakeAlibaba, account: str
) -> None:
    mesh, herald = shared_mesh
    _, app = await herald.create_app(("sms",))
    message_id = await _sent(herald, app, await sms_template(herald))

    assert await _report(mesh, twilio, alibaba, account, delivered=False) == 200

    [delivery] = (await herald.wait_message(app, message_id, _in(S.DELIVERY_STATE_FAILED))).deliveries
    expected = (
        "Twilio reported the message undelivered, error 30003 (unreachable destination handset)"
        if account.startswith("twilio")
        else "Alibaba SMS reported MK:0001: 用户接收失败"
    )
    assert delivery.reason == f"{account}: {expected}"


@pytest.mark.parametrize("account", ["twilio", "alibaba"], indirect=True)
async def test_a_forged_report_is_refused_and_changes_nothing(
    shared_mesh: tuple[Mesh, Herald], twilio: FakeTwilio, alibaba: FakeAlibaba, account: str
) -> None:
    mesh, herald = shared_mesh
    _, app = await herald.create_app(("sms",))
    message_id = await _sent(herald, app, await sms_template(herald))

    assert await _report(mesh, twilio, alibaba, account, delivered=True, token="not-the-secret") == 403

    # A genuine report afterwards still counts, so the forged one was not merely slow.
    assert await _report(mesh, twilio, alibaba, account, delivered=False) == 200
    [delivery] = (await herald.wait_message(app, message_id, _in(S.DELIVERY_STATE_FAILED))).deliveries
    assert S.DELIVERY_STATE_DELIVERED not in [h.state for h in delivery.history]


@pytest.mark.parametrize("account", ["alibaba"], indirect=True)
async def test_an_unknown_account_is_answered_as_a_forgery_is(shared_mesh: tuple[Mesh, Herald], account: str) -> None:
    """Whoever probes the receipts endpoint learns nothing about which provider accounts exist."""
    mesh, _ = shared_mesh
    answers = []
    async with aiohttp.ClientSession() as http:
        for name in (f"no-such-{account}", account):
            async with http.post(f"{mesh.receipts_url(name)}?token=forged", data=b"[]") as reply:
                answers.append((reply.status, await reply.text()))
    assert answers[0] == answers[1] == (403, "not authentic")
    refused = await scrape(mesh.metrics_url("adapters"))
    assert total(refused, "herald_receipts_total", account=account, outcome="refused") == 1
    assert total(refused, "herald_receipts_total", account="", outcome="refused") >= 1, "no series per made-up name"
