"""The twilio plug-in against a local Twilio that checks the wire format and credentials as Twilio does."""

import base64
import uuid
from urllib.parse import urlencode

import aiohttp
import pytest

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels.base import Account, Callback, DeliveryError, Failure, Receipt, ReceiptRefused
from herald.services.adapters.channels.sms.twilio import Twilio, signature
from tests.adapters.channels.sms.fake_twilio import FakeTwilio

TO = "+14155552671"
SENDER = {"from": "+15017122661"}


def _account(
    fake: FakeTwilio, *, timeout: float = 5.0, token: str = "", settings: dict[str, str] | None = None
) -> Account:
    return Account(
        name="twilio-us",
        provider="twilio",
        endpoint=fake.url,
        settings={"account_sid": fake.account_sid, **(SENDER if settings is None else settings)},
        secrets={"auth_token": token or fake.auth_token},
        timeout=timeout,
    )


def _job(address: str = TO) -> work_pb2.DeliveryJob:
    return work_pb2.DeliveryJob(
        delivery_id=uuid.uuid4().hex, channel="sms", address=address, body="Your code is 482910"
    )


async def _refusal(provider: Twilio, job: work_pb2.DeliveryJob | None = None) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await provider.send(job or _job())
    return caught.value


async def test_sends_the_text_and_returns_twilios_message_sid(
    twilio: FakeTwilio, http_session: aiohttp.ClientSession
) -> None:
    account = _account(twilio, settings={**SENDER, "status_callback_url": "https://herald.example/sms/status"})

    sent = await Twilio(account, http_session).send(_job())

    [received] = twilio.received
    assert received.account_sid == twilio.account_sid
    assert received.form == {
        "To": TO,
        "From": "+15017122661",
        "Body": "Your code is 482910",
        "StatusCallback": "https://herald.example/sms/status",
    }
    assert received.headers["Content-Type"] == "application/x-www-form-urlencoded"
    expected_auth = base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
    assert received.headers["Authorization"] == f"Basic {expected_auth}"
    assert sent.provider_message_id == twilio.issued[0]
    assert sent.provider_message_id.startswith("SM")


async def test_a_messaging_service_chooses_the_sender(twilio: FakeTwilio, http_session: aiohttp.ClientSession) -> None:
    account = _account(twilio, settings={"messaging_service_sid": "MG" + "2" * 32})

    sent = await Twilio(account, http_session).send(_job())

    [received] = twilio.received
    assert received.form["MessagingServiceSid"] == "MG" + "2" * 32
    assert "From" not in received.form and "StatusCallback" not in received.form
    assert sent.provider_message_id == twilio.issued[0]


async def test_an_account_without_a_sender_is_refused_before_calling(
    twilio: FakeTwilio, http_session: aiohttp.ClientSession
) -> None:
    error = await _refusal(Twilio(_account(twilio, settings={}), http_session))

    assert error.failure is Failure.BAD_CREDENTIALS
    assert "'from'" in error.reason and "'messaging_service_sid'" in error.reason
    assert twilio.received == []


async def test_an_outage_is_retryable(twilio: FakeTwilio, http_session: aiohttp.ClientSession) -> None:
    twilio.outage = True

    error = await _refusal(Twilio(_account(twilio), http_session))

    assert error.failure is Failure.RETRYABLE
    assert error.reason.startswith("twilio-us answered HTTP 500") and "Twilio error 20500" in error.reason


async def test_a_slow_twilio_times_out_as_retryable(twilio: FakeTwilio, http_session: aiohttp.ClientSession) -> None:
    twilio.delay = 2.0

    error = await _refusal(Twilio(_account(twilio, timeout=0.3), http_session))

    assert error.failure is Failure.RETRYABLE
    assert error.reason == "twilio-us timed out after 0.3s"


async def test_too_many_requests_is_rate_limited(twilio: FakeTwilio, http_session: aiohttp.ClientSession) -> None:
    twilio.rate_limited = True

    error = await _refusal(Twilio(_account(twilio), http_session))

    assert error.failure is Failure.RATE_LIMITED
    assert "Twilio error 20429: Too Many Requests" in error.reason


async def test_a_wrong_auth_token_is_bad_credentials(twilio: FakeTwilio, http_session: aiohttp.ClientSession) -> None:
    account = _account(twilio, token="not-the-token")

    error = await _refusal(Twilio(account, http_session))

    assert error.failure is Failure.BAD_CREDENTIALS
    assert "Twilio error 20003" in error.reason and "AuthToken was incorrect" in error.reason
    assert "not-the-token" not in error.reason


async def test_an_invalid_to_number_is_permanent_and_masked(
    twilio: FakeTwilio, http_session: aiohttp.ClientSession
) -> None:
    error = await _refusal(Twilio(_account(twilio), http_session), _job("14155552671"))

    assert error.failure is Failure.PERMANENT
    assert "Twilio error 21211" in error.reason and "https://www.twilio.com/docs/errors/21211" in error.reason
    assert "14155552671" not in error.reason, "Twilio quotes the number; herald must not repeat it in full"


async def test_a_landline_is_permanent(twilio: FakeTwilio, http_session: aiohttp.ClientSession) -> None:
    twilio.not_mobile.add(TO)

    error = await _refusal(Twilio(_account(twilio), http_session))

    assert error.failure is Failure.PERMANENT
    assert "Twilio error 21614" in error.reason and "not a valid mobile number" in error.reason


def test_twilio_does_not_deduplicate() -> None:
    assert Twilio.channel == "sms"
    assert Twilio.idempotent is False


def test_callback_signature_matches_twilios_documented_example() -> None:
    # https://www.twilio.com/docs/usage/security#validating-requests (the helper libraries' worked example)
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]
    assert signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def _status_callback(account: Account, status: str, error_code: str = "", token: str = "") -> Callback:
    params = [("MessageSid", "SM0123"), ("MessageStatus", status), ("ErrorCode", error_code)]
    signed = signature(token or account.secrets["auth_token"], account.settings["status_callback_url"], params)
    return Callback(query={}, headers={"x-twilio-signature": signed}, body=urlencode(params).encode())


@pytest.mark.parametrize(
    ("status", "error_code", "expected"),
    [
        ("delivered", "", [Receipt("SM0123", True)]),
        (
            "undelivered",
            "30003",
            [
                Receipt(
                    "SM0123",
                    False,
                    "twilio-us: Twilio reported the message undelivered, error 30003 (unreachable destination handset)",
                )
            ],
        ),
        ("sent", "", []),
    ],
)
async def test_status_callbacks_report_only_final_states(
    twilio: FakeTwilio, http_session: aiohttp.ClientSession, status: str, error_code: str, expected: list[Receipt]
) -> None:
    account = _account(twilio, settings={**SENDER, "status_callback_url": "https://herald.example/v1/receipts/t"})
    provider = Twilio(account, http_session)
    assert (await provider.receipts(_status_callback(account, status, error_code))).reports == expected


async def test_a_status_callback_signed_with_another_token_is_refused(
    twilio: FakeTwilio, http_session: aiohttp.ClientSession
) -> None:
    account = _account(twilio, settings={**SENDER, "status_callback_url": "https://herald.example/v1/receipts/t"})
    provider = Twilio(account, http_session)
    with pytest.raises(ReceiptRefused):
        await provider.receipts(_status_callback(account, "delivered", token="someone-elses-token"))


def test_signatures_match_the_vectors_of_twilios_own_request_validator() -> None:
    """twilio-python's RequestValidator tests (tests/unit/test_request_validator.py): token 12345, its URL and
    parameters, and a parameter repeated."""
    uri = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
        ("Caller", "+14158675309"),
    ]
    assert signature("12345", uri, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    repeated = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert signature("12345", uri, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


async def test_a_reply_is_read_once_its_signature_holds_and_answered_in_twiml(
    twilio: FakeTwilio, http_session: aiohttp.ClientSession
) -> None:
    account = _account(twilio, settings={**SENDER, "inbound_url": "https://herald.example/v1/inbound/t"})
    provider = Twilio(account, http_session)
    params = [("From", "+15550001111"), ("Body", "STOP"), ("MessageSid", "SM1")]
    signed = signature(account.secrets["auth_token"], account.settings["inbound_url"], params)
    text = provider.inbound(Callback(query={}, headers={"x-twilio-signature": signed}, body=urlencode(params).encode()))
    assert (text.sender, text.text) == ("+15550001111", "STOP")
    with pytest.raises(ReceiptRefused):
        provider.inbound(Callback(query={}, headers={"x-twilio-signature": "forged"}, body=urlencode(params).encode()))
    answer = provider.reply("Rates <apply> & more")
    assert answer.content_type == "text/xml"
    assert answer.answer.endswith("<Response><Message>Rates &lt;apply&gt; &amp; more</Message></Response>")
