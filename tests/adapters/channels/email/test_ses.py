"""The ses plug-in against a local SES that checks the wire format and the SigV4 signature as AWS does, and a
local SNS that signs notifications as SNS does."""

import hashlib
import json
from collections.abc import Mapping
from functools import partial

import aiohttp
import pytest
import yarl
from herald.v1 import common_pb2

from herald.services.adapters.channels.base import (
    Account,
    AddressReport,
    Callback,
    Failure,
    Receipt,
    ReceiptRefused,
)
from herald.services.adapters.channels.email import sigv4
from herald.services.adapters.channels.email.ses import Ses, sns_url_trusted
from tests.adapters.channels.email.fake_ses import SIGNATURE_MISMATCH, FakeSes, Form
from tests.adapters.channels.email.mail import TO, email_job, refusal

SETTINGS = {"from": "Herald <noreply@example.com>", "region": "us-east-1"}


def _provider(
    fake: FakeSes,
    http: aiohttp.ClientSession,
    *,
    secret: str = "",
    settings: Mapping[str, str] | None = None,
) -> Ses:
    account = Account(
        name="ses-main",
        provider="ses",
        endpoint=fake.url,
        settings={
            **SETTINGS,
            "access_key_id": fake.access_key_id,
            "sns_topic_arn": fake.topic_arn,
            "sns_certificate_url_prefix": fake.url + "/",
            **(settings or {}),
        },
        secrets={"secret_access_key": secret or fake.secret_access_key},
        timeout=5.0,
    )
    return Ses(account, http)


_job = partial(email_job, list_unsubscribe_url="https://herald.example/v1/unsubscribe/signed-token")


def _callback(fake: FakeSes, envelope: dict[str, str]) -> Callback:
    post = fake.post(envelope)
    return Callback(query={}, headers=post.headers, body=post.body)


# Sending.


async def test_sends_the_raw_mime_message_signed_and_returns_ses_message_id(
    ses: FakeSes, http: aiohttp.ClientSession
) -> None:
    sent = await _provider(ses, http, settings={"configuration_set": "herald-events"}).send(
        _job(common_pb2.CATEGORY_MARKETING)
    )

    [received] = ses.received
    assert sent.provider_message_id == received.message_id
    assert received.request["FromEmailAddress"] == "noreply@example.com"
    assert received.request["Destination"] == {"ToAddresses": [TO]}
    assert received.request["ConfigurationSetName"] == "herald-events"
    assert received.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/ses/aws4_request" in received.headers["Authorization"]
    message = received.message
    assert message["From"] == "Herald <noreply@example.com>" and message["To"] == TO
    assert message["Subject"] == "Your sign-in code"
    assert message["Message-ID"] == "<01JB6Q3M5Z8X9K2R4T7V1W3Y5A.1@example.com>"
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and text.get_content().strip() == "Your code is 424242."
    assert html is not None and html.get_content().strip() == "<p>Your code is <b>424242</b>.</p>"
    assert message["List-Unsubscribe"] == "<https://herald.example/v1/unsubscribe/signed-token>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_critical_mail_carries_no_unsubscribe_and_no_configuration_set(
    ses: FakeSes, http: aiohttp.ClientSession
) -> None:
    await _provider(ses, http).send(_job(common_pb2.CATEGORY_CRITICAL))

    [received] = ses.received
    assert "ConfigurationSetName" not in received.request
    assert "List-Unsubscribe" not in received.message and "List-Unsubscribe-Post" not in received.message


async def test_a_wrong_secret_or_no_region_is_bad_credentials(ses: FakeSes, http: aiohttp.ClientSession) -> None:
    error = await refusal(_provider(ses, http, secret="not-the-secret"))

    assert error.failure is Failure.BAD_CREDENTIALS
    assert "HTTP 403" in error.reason and "SignatureDoesNotMatch" in error.reason
    assert SIGNATURE_MISMATCH in error.reason and "not-the-secret" not in error.reason
    assert ses.received == []
    no_region = await refusal(_provider(ses, http, settings={"region": ""}))
    assert no_region.failure is Failure.BAD_CREDENTIALS and "'region'" in no_region.reason


@pytest.mark.parametrize(
    ("flag", "failure", "said"),
    [
        ("throttled", Failure.RATE_LIMITED, "TooManyRequestsException: Maximum sending rate exceeded."),
        ("quota_exceeded", Failure.RATE_LIMITED, "LimitExceededException: Daily message quota exceeded."),
        ("suspended", Failure.BAD_CREDENTIALS, "AccountSuspendedException"),
        ("outage", Failure.RETRYABLE, "HTTP 500: InternalFailure"),
    ],
)
async def test_ses_errors_are_classified_by_their_type(
    ses: FakeSes, http: aiohttp.ClientSession, flag: str, failure: Failure, said: str
) -> None:
    setattr(ses, flag, True)

    error = await refusal(_provider(ses, http))

    assert error.failure is failure
    assert error.reason.startswith("ses-main answered HTTP") and said in error.reason


async def test_a_rejected_recipient_is_permanent_and_masked(ses: FakeSes, http: aiohttp.ClientSession) -> None:
    ses.verified = {"noreply@example.com"}

    error = await refusal(_provider(ses, http))

    assert error.failure is Failure.PERMANENT
    assert "MessageRejected: Email address is not verified" in error.reason
    assert TO not in error.reason and "a***@example.org" in error.reason


async def test_an_unverified_sender_is_bad_credentials(ses: FakeSes, http: aiohttp.ClientSession) -> None:
    ses.verified = {TO}

    error = await refusal(_provider(ses, http))

    assert error.failure is Failure.BAD_CREDENTIALS
    assert "MessageRejected" in error.reason and "noreply@example.com" not in error.reason


# SigV4, against AWS's own test suite (aws-sig-v4-test-suite: get-vanilla, get-vanilla-query-order-key-case,
# post-vanilla).


@pytest.mark.parametrize(
    ("method", "url", "signature"),
    [
        ("GET", "https://example.amazonaws.com/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        (
            "GET",
            "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        ("POST", "https://example.amazonaws.com/", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ],
)
def test_sigv4_matches_aws_test_suite(method: str, url: str, signature: str) -> None:
    authorization = sigv4.authorization(
        method,
        yarl.URL(url),
        {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"},
        hashlib.sha256(b"").hexdigest(),
        amz_date="20150830T123600Z",
        region="us-east-1",
        service="service",
        access_key_id="AKIDEXAMPLE",
        secret="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    )
    assert authorization == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}"
    )


# Notifications through SNS.


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("form", ["notification", "event"])
async def test_a_permanent_bounce_is_a_hard_bounce_of_the_address(
    ses: FakeSes, http: aiohttp.ClientSession, version: str, form: Form
) -> None:
    provider = _provider(ses, http)
    sent = await provider.send(_job())
    envelope = ses.bounce(sent.provider_message_id, TO, form=form, version=version)

    receipts = await provider.receipts(_callback(ses, envelope))

    assert receipts.reports == [
        Receipt(
            sent.provider_message_id,
            False,
            "ses-main: SES reported a permanent bounce (General): smtp; 550 5.1.1 user unknown",
            AddressReport.HARD_BOUNCE,
            TO,
        )
    ]


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
async def test_a_transient_bounce_is_a_soft_bounce(ses: FakeSes, http: aiohttp.ClientSession, bounce_type: str) -> None:
    diagnostic = f"smtp; 452 4.2.2 The mailbox of {TO} is full"
    envelope = ses.bounce("0100-msg", TO, bounce_type=bounce_type, subtype="MailboxFull", diagnostic=diagnostic)

    [report] = (await _provider(ses, http).receipts(_callback(ses, envelope))).reports

    assert (report.provider_message_id, report.delivered) == ("0100-msg", False)
    assert report.address_report is AddressReport.SOFT_BOUNCE and report.address == TO
    assert f"{bounce_type.lower()} bounce (MailboxFull)" in report.reason
    assert TO not in report.reason and "a***@example.org is full" in report.reason


@pytest.mark.parametrize("version", ["1", "2"])
async def test_a_complaint_reports_the_address_and_changes_no_delivery(
    ses: FakeSes, http: aiohttp.ClientSession, version: str
) -> None:
    envelope = ses.complaint("0100-msg", TO, form="event", version=version)

    [report] = (await _provider(ses, http).receipts(_callback(ses, envelope))).reports

    assert report.provider_message_id == "0100-msg" and report.delivered is None
    assert report.address_report is AddressReport.COMPLAINT and report.address == TO
    assert "complaint" in report.reason and "(abuse)" in report.reason


@pytest.mark.parametrize("version", ["1", "2"])
async def test_a_delivery_is_delivered(ses: FakeSes, http: aiohttp.ClientSession, version: str) -> None:
    provider = _provider(ses, http)
    envelope = ses.delivery("0100-msg", TO, version=version)

    receipts = await provider.receipts(_callback(ses, envelope))

    assert receipts.reports == [Receipt("0100-msg", True, address=TO)]


async def test_a_subject_is_signed_too_and_the_certificate_is_fetched_once(
    ses: FakeSes, http: aiohttp.ClientSession
) -> None:
    provider = _provider(ses, http)
    detail = {"timestamp": "2024-05-28T22:41:01.184Z", "recipients": [TO]}
    envelope = ses.notification("Delivery", "0100-msg", TO, detail, subject="Amazon SES Email Event Notification")

    assert (await provider.receipts(_callback(ses, envelope))).reports == [Receipt("0100-msg", True, address=TO)]
    assert (await provider.receipts(_callback(ses, ses.delivery("0100-msg", TO)))).reports
    assert ses.certificate_fetches == 1


async def test_other_ses_events_are_taken_and_ignored(ses: FakeSes, http: aiohttp.ClientSession) -> None:
    envelope = ses.notification("Open", "0100-msg", TO, {"timestamp": "2024-05-28T22:41:01.184Z"}, form="event")

    assert (await _provider(ses, http).receipts(_callback(ses, envelope))).reports == []


async def test_a_subscription_confirmation_gets_its_subscribe_url(ses: FakeSes, http: aiohttp.ClientSession) -> None:
    envelope = ses.subscription_confirmation(version="2")

    receipts = await _provider(ses, http).receipts(_callback(ses, envelope))

    assert receipts.reports == []
    assert ses.confirmed == [envelope["Token"]]


# Forgeries.


async def _refused(provider: Ses, callback: Callback) -> str:
    with pytest.raises(ReceiptRefused) as caught:
        await provider.receipts(callback)
    return str(caught.value)


async def test_a_tampered_message_is_refused(ses: FakeSes, http: aiohttp.ClientSession) -> None:
    envelope = ses.complaint("0100-msg", TO)
    forged = envelope | {"Message": envelope["Message"].replace("Complaint", "Delivery")}

    assert "signature does not match" in await _refused(_provider(ses, http), _callback(ses, forged))


async def test_a_bad_signature_is_refused(ses: FakeSes, http: aiohttp.ClientSession) -> None:
    envelope = ses.bounce("0100-msg", TO)
    other = ses.delivery("0100-msg", TO)
    provider = _provider(ses, http)

    assert "signature does not match" in await _refused(
        provider, _callback(ses, envelope | {"Signature": other["Signature"]})
    )
    assert "not base64" in await _refused(provider, _callback(ses, envelope | {"Signature": "%%%"}))
    assert "SignatureVersion" in await _refused(provider, _callback(ses, envelope | {"SignatureVersion": "3"}))


async def test_a_certificate_from_another_sns_is_refused_without_fetching_it(
    ses: FakeSes, http: aiohttp.ClientSession
) -> None:
    async with FakeSes(access_key_id="AKIDOTHER", secret_access_key="other", topic_arn=ses.topic_arn) as forger:
        envelope = forger.bounce("0100-msg", TO)

        assert "is not Amazon SNS's" in await _refused(_provider(ses, http), _callback(forger, envelope))
        assert forger.certificate_fetches == 0


async def test_another_topic_is_refused_before_any_fetch(ses: FakeSes, http: aiohttp.ClientSession) -> None:
    envelope = ses.signed(ses.bounce("0100-msg", TO) | {"TopicArn": "arn:aws:sns:us-east-1:999999999999:theirs"})

    assert "is not the account's sns_topic_arn" in await _refused(_provider(ses, http), _callback(ses, envelope))
    assert ses.certificate_fetches == 0


async def test_a_subscribe_url_elsewhere_is_not_visited(ses: FakeSes, http: aiohttp.ClientSession) -> None:
    envelope = ses.subscription_confirmation()
    forged = ses.signed(envelope | {"SubscribeURL": "https://attacker.example/?Action=ConfirmSubscription"})

    assert "SubscribeURL" in await _refused(_provider(ses, http), _callback(ses, forged))
    assert ses.confirmed == []


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", json.dumps({"Type": "Notification"}).encode(), json.dumps({"Type": "Other"}).encode()],
)
async def test_malformed_posts_are_refused(ses: FakeSes, http: aiohttp.ClientSession, body: bytes) -> None:
    await _refused(_provider(ses, http), Callback(query={}, headers={}, body=body))


async def test_a_message_that_is_not_ses_json_is_refused(ses: FakeSes, http: aiohttp.ClientSession) -> None:
    envelope = ses.signed(ses.delivery("0100-msg", TO) | {"Message": "hello"})

    assert "not an SES notification" in await _refused(_provider(ses, http), _callback(ses, envelope))


async def test_without_a_topic_nothing_is_taken(ses: FakeSes, http: aiohttp.ClientSession) -> None:
    provider = _provider(ses, http, settings={"sns_topic_arn": ""})
    assert "no sns_topic_arn" in await _refused(provider, _callback(ses, ses.delivery("0100-msg", TO)))


TOPIC = "arn:aws:sns:eu-west-1:123456789012:feedback"


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
        ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
        ("https://sns.eu-west-1.amazonaws.com.attacker.example/cert.pem", False),
        ("https://sns.eu-west-1.amazonaws.com@attacker.example/cert.pem", False),
        ("https://attacker.example/sns.eu-west-1.amazonaws.com/cert.pem", False),
        ("https://sns.eu-west-1.amazonaws.com:8443/cert.pem", False),
        ("", False),
    ],
)
def test_only_sns_of_the_topics_region_is_trusted(url: str, trusted: bool) -> None:
    assert sns_url_trusted(url, TOPIC) is trusted


def test_a_prefix_replaces_the_host_rule_and_ends_at_a_path() -> None:
    assert sns_url_trusted("http://127.0.0.1:8080/cert.pem", TOPIC, "http://127.0.0.1:8080")
    assert not sns_url_trusted("http://127.0.0.1:80801/cert.pem", TOPIC, "http://127.0.0.1:8080")
    assert not sns_url_trusted("https://sns.eu-west-1.amazonaws.com/cert.pem", TOPIC, "http://127.0.0.1:8080/")
    assert sns_url_trusted("https://sns.cn-north-1.amazonaws.com.cn/c.pem", "arn:aws-cn:sns:cn-north-1:1:t")
