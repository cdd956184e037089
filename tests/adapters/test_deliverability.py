"""Deliverability and consent over the real mesh, each provider's own verification on the wire: a hard bounce SES
reports through SNS suppresses the address; a complaint SendGrid reports opts the user out of marketing; herald's
one-click unsubscribe (headers on marketing and notification mail, none on critical) opts the user out within a
second; an SMS STOP suppresses the phone until START. Forged notifications and links are refused."""

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import trustme
from herald.v1 import common_pb2, directory_service_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as pb
from herald.v1 import suppression_service_pb2 as suppression_pb

from devmesh.mesh import Mesh
from tests.adapters.channels.email.fake_sendgrid import FakeSendGrid, new_key
from tests.adapters.channels.email.fake_ses import FakeSes
from tests.adapters.channels.email.fake_smtp import USERNAME, FakeSmtp, write_ca
from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.adapters.deliverability import (
    CREDENTIAL,
    account_name,
    delivered,
    email_templates,
    mail_sender,
)
from tests.adapters.sms import PHONE, sms_template, twilio_account
from tests.conftest import PROVIDER_ENV
from tests.helpers.client import Herald

S = common_pb2
SUPPRESSED, SENT = S.DELIVERY_STATE_SUPPRESSED, S.DELIVERY_STATE_SENT


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as answer:
        return answer.status


async def test_a_hard_bounce_reported_through_sns_suppresses_the_address(
    shared_mesh: tuple[Mesh, Herald],
) -> None:
    mesh, herald = shared_mesh
    ses = FakeSes(access_key_id="AKIDHERALDTEST", secret_access_key=PROVIDER_ENV[CREDENTIAL])
    await ses.start()
    name = account_name("ses")
    account = pb.ProviderAccount(
        name=name,
        provider="ses",
        endpoint=ses.url,
        settings={
            "region": ses.region,
            "access_key_id": ses.access_key_id,
            "from": "Shop <noreply@example.com>",
            "sns_topic_arn": ses.topic_arn,
            "sns_certificate_url_prefix": ses.url,
        },
        credentials={"secret_access_key": CREDENTIAL},
    )
    try:
        async with herald.provider_accounts(account):
            _, app = await herald.create_app(("email",))
            template = (await email_templates(herald))[S.CATEGORY_NOTIFICATION]
            gone = msg.Recipient(addresses={"email": "Gone.Reader@example.org"})
            first = await delivered(herald, app, template, gone)
            assert first.state == SENT, first.reason
            [sent] = ses.received

            forged = ses.post(ses.bounce(sent.message_id, "gone.reader@example.org") | {"TopicArn": "arn:aws:sns:x"})
            assert await _post(mesh.receipts_url(name), forged.body, forged.headers) == 403
            assert (await delivered(herald, app, template, gone)).state == SENT, "a forged bounce changes nothing"

            bounce = ses.post(ses.bounce(sent.message_id, "gone.reader@example.org"))
            assert await _post(mesh.receipts_url(name), bounce.body, bounce.headers) == 200
            await _until(lambda: _suppressed(herald, "email", "gone.reader@example.org"))
            after = await delivered(herald, app, template, gone)
            assert after.state == SUPPRESSED, after.reason
            assert "suppression list" in after.reason and "bounced for good" in after.reason and name in after.reason
    finally:
        await ses.stop()


async def test_a_complaint_sendgrid_reports_opts_the_user_out_of_marketing_email(
    shared_mesh: tuple[Mesh, Herald],
) -> None:
    mesh, herald = shared_mesh
    sendgrid = FakeSendGrid(api_key=PROVIDER_ENV[CREDENTIAL])
    await sendgrid.start()
    name = account_name("sendgrid")
    account = pb.ProviderAccount(
        name=name,
        provider="sendgrid",
        endpoint=sendgrid.url,
        settings={"from": "Shop <news@example.com>", "event_webhook_public_key": sendgrid.public_key},
        credentials={"api_key": CREDENTIAL},
    )
    try:
        async with herald.provider_accounts(account):
            app, templates, user_id = await mail_sender(herald, "reader@example.org")
            reader = msg.Recipient(user_id=user_id)
            first = await delivered(herald, app, templates[S.CATEGORY_MARKETING], reader)
            assert first.state == SENT, first.reason
            complaint = [sendgrid.event(sendgrid.issued[-1], "spamreport")]

            forged = sendgrid.post(complaint, signed_with=new_key())
            assert await _post(mesh.receipts_url(name), forged.body, forged.headers) == 403

            signed = sendgrid.post(complaint)
            assert await _post(mesh.receipts_url(name), signed.body, signed.headers) == 200
            await _until(lambda: _opted_out(herald, user_id))
            marketing = await delivered(herald, app, templates[S.CATEGORY_MARKETING], reader)
            assert marketing.state == SUPPRESSED and "opted out of marketing messages on email" in marketing.reason
            assert (await delivered(herald, app, templates[S.CATEGORY_NOTIFICATION], reader)).state == SENT
    finally:
        await sendgrid.stop()


@pytest.mark.serial  # it times herald (the opt-out within a second of the click): run alone, after the rest
async def test_one_click_unsubscribe_opts_the_user_out_at_once_and_links_cannot_be_forged(
    herald: Herald, tmp_path: Path
) -> None:
    ca = trustme.CA()
    relay = FakeSmtp(ca, USERNAME, PROVIDER_ENV[CREDENTIAL])
    await relay.start()
    account = pb.ProviderAccount(
        name=account_name("smtp"),
        provider="smtp",
        endpoint=relay.endpoint,
        settings={"from": "Shop <news@example.com>", "username": USERNAME, "tls_ca_file": str(write_ca(ca, tmp_path))},
        credentials={"password": CREDENTIAL},
    )
    try:
        async with herald.provider_accounts(account):
            app, templates, user_id = await mail_sender(herald, "reader@example.org")
            reader = msg.Recipient(user_id=user_id)
            for category in (S.CATEGORY_MARKETING, S.CATEGORY_NOTIFICATION, S.CATEGORY_CRITICAL):
                assert (await delivered(herald, app, templates[category], reader)).state == SENT
            marketing, notification, critical = (r.message for r in relay.received)
            assert "List-Unsubscribe" not in critical and "List-Unsubscribe-Post" not in critical
            for mail in (marketing, notification):
                assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            url = marketing["List-Unsubscribe"].strip("<>")
            assert url != notification["List-Unsubscribe"].strip("<>"), "signed per category"

            body, _, signature = url.rpartition("/")[2].partition(".")
            other_user = base64.urlsafe_b64encode(b"u\n3\nsomeone-else").decode().rstrip("=")
            async with aiohttp.ClientSession() as session:
                for forged in (f"{url[: -len(body) - len(signature) - 1]}{other_user}.{signature}", f"{url}x"):
                    async with session.post(forged, data="List-Unsubscribe=One-Click") as answer:
                        assert answer.status == 403
                async with session.get(url) as page:
                    assert page.status == 200 and "<form" in await page.text()
                assert not await _opted_out(herald, user_id), "a GET (a mail scanner) unsubscribes no one"

                clicked = time.monotonic()
                async with session.post(url, data="List-Unsubscribe=One-Click") as answer:
                    assert answer.status == 200
                while not await _opted_out(herald, user_id):
                    assert time.monotonic() - clicked < 1.0, "opted out within a second of the click"
                    await asyncio.sleep(0.02)
            again = await delivered(herald, app, templates[S.CATEGORY_MARKETING], reader)
            assert again.state == SUPPRESSED and "opted out of marketing" in again.reason
            assert (await delivered(herald, app, templates[S.CATEGORY_NOTIFICATION], reader)).state == SENT
    finally:
        await relay.stop()


async def test_stop_suppresses_the_phone_until_start_and_help_is_answered(
    shared_mesh: tuple[Mesh, Herald], twilio: FakeTwilio
) -> None:
    mesh, herald = shared_mesh
    name = account_name("twilio")
    account = twilio_account(name, twilio, inbound_url=mesh.inbound_url(name), help_text="Shop alerts. Reply STOP")
    async with herald.provider_accounts(account):
        _, app = await herald.create_app(("sms",))
        template = await sms_template(herald, S.CATEGORY_NOTIFICATION)
        phone = msg.Recipient(addresses={"sms": PHONE})
        assert (await delivered(herald, app, template, phone)).state == SENT

        assert (await twilio.text(mesh.inbound_url(name), PHONE, "STOP", signed_with="forged"))[0] == 403
        status, twiml = await twilio.text(mesh.inbound_url(name), PHONE, "Stop ")
        assert status == 200 and twiml.endswith("<Response></Response>")
        await _until(lambda: _suppressed(herald, "sms", PHONE))
        stopped = await delivered(herald, app, template, phone)
        assert stopped.state == SUPPRESSED and "replied STOP" in stopped.reason

        status, twiml = await twilio.text(mesh.inbound_url(name), PHONE, "HELP")
        assert status == 200 and "<Message>Shop alerts. Reply STOP</Message>" in twiml
        assert (await twilio.text(mesh.inbound_url(name), PHONE, "START"))[0] == 200
        await _until(lambda: _unsuppressed(herald, "sms", PHONE))
        assert (await delivered(herald, app, template, phone)).state == SENT


async def _opted_out(herald: Herald, user_id: str) -> bool:
    user = await herald.directory.GetUser(directory_service_pb2.GetUserRequest(user_id=user_id), metadata=herald.admin)
    return any(p.opted_out and p.category == S.CATEGORY_MARKETING for p in user.preferences)


async def _suppressed(herald: Herald, channel: str, address: str) -> bool:
    request = suppression_pb.ListSuppressionsRequest(channel=channel, address=address)
    return bool((await herald.suppressions.ListSuppressions(request, metadata=herald.admin)).suppressions)


async def _unsuppressed(herald: Herald, channel: str, address: str) -> bool:
    return not await _suppressed(herald, channel, address)


async def _until(holds: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Wait for what the router records after the adapters answered (a few milliseconds, unless the machine is busy)."""
    deadline = time.monotonic() + within
    while not await holds():
        assert time.monotonic() < deadline, f"not within {within}s"
        await asyncio.sleep(0.02)
