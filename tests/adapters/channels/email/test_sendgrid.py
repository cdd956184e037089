"""The sendgrid plug-in against a local SendGrid that checks the Mail Send schema and the API key as SendGrid does,
and signs Event Webhook posts with a key of its own as SendGrid does."""

import json
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from herald.v1 import common_pb2

from herald.services.adapters.channels.base import (
    Account,
    AddressReport,
    Callback,
    Failure,
    Receipt,
    ReceiptRefused,
)
from herald.services.adapters.channels.email.sendgrid import SendGrid
from tests.adapters.channels.email.fake_sendgrid import EventPost, FakeSendGrid, new_key
from tests.adapters.channels.email.mail import TO, email_job, refusal

UNSUBSCRIBE = "https://herald.example/v1/unsubscribe/tok3n"


def _account(
    fake: FakeSendGrid, *, api_key: str = "", settings: Mapping[str, str] | None = None, timeout: float = 5.0
) -> Account:
    return Account(
        name="sendgrid-main",
        provider="sendgrid",
        endpoint=fake.url,
        settings={"from": "Herald <noreply@example.com>", "event_webhook_public_key": fake.public_key}
        if settings is None
        else settings,
        secrets={"api_key": api_key or fake.api_key},
        timeout=timeout,
    )


_job = partial(email_job, list_unsubscribe_url=UNSUBSCRIBE)


async def test_sends_the_mail_and_returns_the_x_message_id(sendgrid: FakeSendGrid, http: aiohttp.ClientSession) -> None:
    sent = await SendGrid(_account(sendgrid), http).send(_job())

    [received] = sendgrid.received
    assert received.headers["Authorization"] == f"Bearer {sendgrid.api_key}"
    assert received.headers["Content-Type"] == "application/json"
    assert received.mail["personalizations"] == [
        {"to": [{"email": TO}], "custom_args": {"herald_delivery_id": "01JB6Q3M5Z8X9K2R4T7V1W3Y5A.1"}}
    ]
    assert received.mail["from"] == {"email": "noreply@example.com", "name": "Herald"}
    assert received.mail["subject"] == "Your sign-in code"
    assert received.mail["content"] == [
        {"type": "text/plain", "value": "Your code is 424242."},
        {"type": "text/html", "value": "<p>Your code is <b>424242</b>.</p>"},
    ]
    assert received.mail["categories"] == ["notification"]
    tracking = received.mail["tracking_settings"]
    assert not any(setting["enable"] for setting in tracking.values()), "herald tracks and unsubscribes itself"
    assert sent.provider_message_id == sendgrid.issued[0]


async def test_notification_mail_carries_heralds_one_click_unsubscribe(
    sendgrid: FakeSendGrid, http: aiohttp.ClientSession
) -> None:
    await SendGrid(_account(sendgrid), http).send(_job())

    assert sendgrid.received[0].mail["headers"] == {
        "List-Unsubscribe": f"<{UNSUBSCRIBE}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


async def test_marketing_mail_carries_the_accounts_unsubscribe_url_and_mailto(
    sendgrid: FakeSendGrid, http: aiohttp.ClientSession
) -> None:
    settings = {
        "from": "noreply@example.com",
        "unsubscribe_url": "https://example.com/unsubscribe?user={user_id}",
        "unsubscribe_mailto": "unsubscribe@example.com",
    }

    await SendGrid(_account(sendgrid, settings=settings), http).send(_job(common_pb2.CATEGORY_MARKETING))

    [received] = sendgrid.received
    assert received.mail["headers"]["List-Unsubscribe"] == (
        "<https://example.com/unsubscribe?user=user%2F7>, <mailto:unsubscribe@example.com>"
    )
    assert received.mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received.mail["from"] == {"email": "noreply@example.com"}
    assert received.mail["categories"] == ["marketing"]


async def test_critical_mail_has_no_unsubscribe_headers(sendgrid: FakeSendGrid, http: aiohttp.ClientSession) -> None:
    await SendGrid(_account(sendgrid), http).send(_job(common_pb2.CATEGORY_CRITICAL))

    assert "headers" not in sendgrid.received[0].mail


async def test_marketing_mail_without_any_unsubscribe_url_is_refused_before_calling(
    sendgrid: FakeSendGrid, http: aiohttp.ClientSession
) -> None:
    job = _job(common_pb2.CATEGORY_MARKETING, list_unsubscribe_url="")

    error = await refusal(SendGrid(_account(sendgrid), http), job)

    assert error.failure is Failure.PERMANENT
    assert sendgrid.received == []


async def test_text_only_mail_has_one_content_block(sendgrid: FakeSendGrid, http: aiohttp.ClientSession) -> None:
    await SendGrid(_account(sendgrid), http).send(_job(html_body=""))

    assert sendgrid.received[0].mail["content"] == [{"type": "text/plain", "value": "Your code is 424242."}]


async def test_a_wrong_api_key_is_bad_credentials(sendgrid: FakeSendGrid, http: aiohttp.ClientSession) -> None:
    error = await refusal(SendGrid(_account(sendgrid, api_key="SG.not-the-key"), http))

    assert error.failure is Failure.BAD_CREDENTIALS
    assert error.reason == (
        "sendgrid-main answered HTTP 401: The provided authorization grant is invalid, expired, or revoked"
    )


async def test_an_account_without_a_sender_is_refused_before_calling(
    sendgrid: FakeSendGrid, http: aiohttp.ClientSession
) -> None:
    error = await refusal(SendGrid(_account(sendgrid, settings={}), http))

    assert error.failure is Failure.BAD_CREDENTIALS and "'from'" in error.reason
    assert sendgrid.received == []


async def test_too_many_requests_is_rate_limited_until_the_reset(
    sendgrid: FakeSendGrid, http: aiohttp.ClientSession
) -> None:
    sendgrid.rate_limited = True

    error = await refusal(SendGrid(_account(sendgrid), http))

    assert error.failure is Failure.RATE_LIMITED
    assert error.reason == "sendgrid-main answered HTTP 429: too many requests"
    assert error.retry_after is not None and 25 <= error.retry_after <= 30


async def test_an_address_sendgrid_refuses_is_permanent(sendgrid: FakeSendGrid, http: aiohttp.ClientSession) -> None:
    error = await refusal(SendGrid(_account(sendgrid), http), _job(address="alice@localhost"))

    assert error.failure is Failure.PERMANENT
    assert error.reason.startswith("sendgrid-main answered HTTP 400: Does not contain a valid address.")
    assert "(personalizations.0.to.0.email)" in error.reason


async def test_an_outage_is_retryable(sendgrid: FakeSendGrid, http: aiohttp.ClientSession) -> None:
    sendgrid.outage = True

    error = await refusal(SendGrid(_account(sendgrid), http))

    assert error.failure is Failure.RETRYABLE


async def _sent(sendgrid: FakeSendGrid, http: aiohttp.ClientSession) -> tuple[SendGrid, str]:
    provider = SendGrid(_account(sendgrid), http)
    return provider, (await provider.send(_job())).provider_message_id


async def _read(provider: SendGrid, post: EventPost) -> list[Receipt]:
    return (await provider.receipts(post.callback())).reports


BOUNCED = {"type": "bounce", "status": "5.1.1", "reason": f"550 5.1.1 <{TO}>: Recipient address rejected"}
BLOCKED = {"type": "blocked", "status": "4.0.0", "reason": "421 4.7.0 Try again later, closing connection"}


@pytest.mark.parametrize(
    ("kind", "fields", "delivered", "reason", "report"),
    [
        ("delivered", {"response": "250 OK"}, True, "", None),
        (
            "bounce",
            BOUNCED,
            False,
            "the receiving server bounced the message: 5.1.1 550 5.1.1 <a***@example.org>: Recipient address rejected",
            AddressReport.HARD_BOUNCE,
        ),
        (
            "bounce",
            BLOCKED,
            False,
            "the receiving server blocked the message: 4.0.0 421 4.7.0 Try again later, closing connection",
            AddressReport.SOFT_BOUNCE,
        ),
        ("spamreport", {}, None, "the reader reported the mail as spam", AddressReport.COMPLAINT),
        (
            "dropped",
            {"reason": "Bounced Address", "status": "5.0.0"},
            False,
            "SendGrid dropped the message: 5.0.0 Bounced Address",
            AddressReport.HARD_BOUNCE,
        ),
        (
            "dropped",
            {"reason": "Spam Reporting Address"},
            False,
            "SendGrid dropped the message: Spam Reporting Address",
            AddressReport.COMPLAINT,
        ),
        (
            "dropped",
            {"reason": "Unsubscribed Address"},
            False,
            "SendGrid dropped the message: Unsubscribed Address",
            None,
        ),
    ],
)
async def test_events_are_read_as_receipts(
    sendgrid: FakeSendGrid,
    http: aiohttp.ClientSession,
    kind: str,
    fields: dict[str, Any],
    delivered: bool | None,
    reason: str,
    report: AddressReport | None,
) -> None:
    provider, message_id = await _sent(sendgrid, http)

    [receipt] = await _read(provider, sendgrid.post([sendgrid.event(message_id, kind, **fields)]))

    assert receipt.provider_message_id == message_id
    assert receipt.delivered is delivered
    assert receipt.reason == (f"sendgrid-main: {reason}" if reason else "")
    assert receipt.address_report is report
    assert receipt.address == (TO if report else "")


@pytest.mark.parametrize(
    "kind", ["processed", "deferred", "open", "click", "unsubscribe", "group_unsubscribe", "something_new"]
)
async def test_events_herald_does_not_act_on_are_ignored(
    sendgrid: FakeSendGrid, http: aiohttp.ClientSession, kind: str
) -> None:
    provider, message_id = await _sent(sendgrid, http)

    assert await _read(provider, sendgrid.post([sendgrid.event(message_id, kind)])) == []


async def test_a_batch_is_read_in_order(sendgrid: FakeSendGrid, http: aiohttp.ClientSession) -> None:
    provider, first = await _sent(sendgrid, http)
    second = (await provider.send(_job())).provider_message_id
    events = [
        sendgrid.event(first, "processed"),
        sendgrid.event(first, "delivered"),
        sendgrid.event(second, "bounce", **BOUNCED),
    ]

    receipts = await _read(provider, sendgrid.post(events))

    assert [(r.provider_message_id, r.delivered) for r in receipts] == [(first, True), (second, False)]


async def test_a_complaint_without_a_message_id_still_reports_the_address(
    sendgrid: FakeSendGrid, http: aiohttp.ClientSession
) -> None:
    provider, message_id = await _sent(sendgrid, http)
    event = sendgrid.event(message_id, "spamreport")
    del event["sg_message_id"]

    [receipt] = await _read(provider, sendgrid.post([event]))

    assert receipt == Receipt(
        "", None, "sendgrid-main: the reader reported the mail as spam", AddressReport.COMPLAINT, TO
    )


async def test_sendgrids_own_signed_example_is_accepted(
    sendgrid: FakeSendGrid, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Event Webhook verification example of SendGrid's own library (sendgrid-python, test_eventwebhook.py):
    # a request SendGrid signed, checked against the key its console showed.
    payload = [
        {
            "email": "hello@world.com",
            "event": "dropped",
            "reason": "Bounced Address",
            "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
            "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
            "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
            "timestamp": 1600112492,
        }
    ]
    body = (json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\r\n").encode()
    headers = {
        "x-twilio-email-event-webhook-signature": "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0"
        "JuG+luQAbPIqHh89M15TluLtEZtM=",
        "x-twilio-email-event-webhook-timestamp": "1600112502",
    }
    key = (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpig"
        "lSI8eNEc6wEA3F+g=="
    )
    provider = SendGrid(_account(sendgrid, settings={"from": "a@example.com", "event_webhook_public_key": key}), http)
    monkeypatch.setattr(time, "time", lambda: 1600112502.0 + 60)

    receipts = await provider.receipts(Callback(query={}, headers=headers, body=body))

    assert receipts.reports == [
        Receipt(
            "LRzXl_NHStOGhQ4kofSm_A",
            False,
            "sendgrid-main: SendGrid dropped the message: Bounced Address",
            AddressReport.HARD_BOUNCE,
            "hello@world.com",
        )
    ]


async def test_a_verification_key_pasted_as_pem_is_accepted(
    sendgrid: FakeSendGrid, http: aiohttp.ClientSession
) -> None:
    pem = sendgrid.signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = {"from": "a@example.com", "event_webhook_public_key": pem.decode()}
    provider = SendGrid(_account(sendgrid, settings=settings), http)
    _, message_id = await _sent(sendgrid, http)

    [receipt] = await _read(provider, sendgrid.post([sendgrid.event(message_id, "delivered")]))

    assert receipt == Receipt(message_id, True)


def _tampered(post: EventPost) -> EventPost:
    return EventPost(post.headers, post.body.replace(b'"bounce"', b'"delivered"'))


def _without(post: EventPost, header: str) -> EventPost:
    return EventPost({k: v for k, v in post.headers.items() if k != header}, post.body)


Forge = Callable[[FakeSendGrid, list[dict[str, Any]]], EventPost]
NO_MATCH = "Signature does not match"
NOT_NOW = "not within ten minutes of now"
MISSING = "signature or timestamp header is missing"


def _garbled(post: EventPost) -> EventPost:
    return EventPost({**post.headers, "X-Twilio-Email-Event-Webhook-Signature": "not base64!"}, post.body)


@pytest.mark.parametrize(
    ("forge", "refusal"),
    [
        pytest.param(lambda fake, events: fake.post(events, signed_with=new_key()), NO_MATCH, id="another-key"),
        pytest.param(lambda fake, events: _tampered(fake.post(events)), NO_MATCH, id="tampered-body"),
        pytest.param(lambda fake, events: _garbled(fake.post(events)), NO_MATCH, id="garbled-signature"),
        pytest.param(lambda fake, events: fake.post(events, timestamp=int(time.time()) - 601), NOT_NOW, id="stale"),
        pytest.param(lambda fake, events: fake.post(events, timestamp=int(time.time()) + 601), NOT_NOW, id="future"),
        pytest.param(
            lambda fake, events: _without(fake.post(events), "X-Twilio-Email-Event-Webhook-Signature"),
            MISSING,
            id="no-signature",
        ),
        pytest.param(
            lambda fake, events: _without(fake.post(events), "X-Twilio-Email-Event-Webhook-Timestamp"),
            MISSING,
            id="no-timestamp",
        ),
        pytest.param(lambda fake, events: fake.signed(b"[{not json"), "not JSON", id="signed-but-not-json"),
        pytest.param(lambda fake, events: fake.signed(b'{"event": "delivered"}'), "not an array", id="not-an-array"),
    ],
)
async def test_forged_or_malformed_posts_are_refused(
    sendgrid: FakeSendGrid, http: aiohttp.ClientSession, forge: Forge, refusal: str
) -> None:
    provider, message_id = await _sent(sendgrid, http)
    post = forge(sendgrid, [sendgrid.event(message_id, "bounce", **BOUNCED)])

    with pytest.raises(ReceiptRefused, match=refusal):
        await provider.receipts(post.callback())


@pytest.mark.parametrize("key", ["", "bm90IGEga2V5", "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="])
async def test_without_a_usable_verification_key_every_post_is_refused(
    sendgrid: FakeSendGrid, http: aiohttp.ClientSession, key: str
) -> None:
    # "", a key that is not DER, and an Ed25519 key (not what SendGrid signs with).
    provider = SendGrid(_account(sendgrid, settings={"from": "a@example.com", "event_webhook_public_key": key}), http)
    _, message_id = await _sent(sendgrid, http)

    with pytest.raises(ReceiptRefused, match="event_webhook_public_key"):
        await provider.receipts(sendgrid.post([sendgrid.event(message_id, "delivered")]).callback())
