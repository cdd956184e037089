"""The alibaba_sms plug-in against a local Alibaba Cloud SMS that recomputes the documented signature."""

import json
import uuid
from dataclasses import replace

import aiohttp
import pytest

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels.base import Account, Callback, DeliveryError, Failure, Receipt, ReceiptRefused
from herald.services.adapters.channels.sms.alibaba_sms import AlibabaSms
from tests.adapters.channels.sms import fake_alibaba
from tests.adapters.channels.sms.fake_alibaba import FakeAlibaba

TO = "+8613800138000"
CODE = {"template_code": "SMS_154950909", "code": "482910"}
# Characters the percent-encoding rules treat specially: space, "*", "~", "/", "+" and non-ASCII.
PRODUCT = "herald (a/b) *beta* ~1+1 测试"


def _account(
    fake: FakeAlibaba, *, timeout: float = 5.0, key_id: str = "", secret: str = "", **settings: str
) -> Account:
    return Account(
        name="aliyun-cn",
        provider="alibaba_sms",
        endpoint=fake.url,
        settings={"sign_name": "阿里云短信测试", **settings},
        secrets={
            "access_key_id": key_id or fake.access_key_id,
            "access_key_secret": secret or fake.access_key_secret,
        },
        timeout=timeout,
    )


def _job(address: str = TO, data: dict[str, str] | None = None) -> work_pb2.DeliveryJob:
    return work_pb2.DeliveryJob(
        delivery_id=uuid.uuid4().hex,
        channel="sms",
        address=address,
        body="rendered text Alibaba does not take",
        data=CODE if data is None else data,
    )


async def _refusal(provider: AlibabaSms, job: work_pb2.DeliveryJob | None = None) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await provider.send(job or _job())
    return caught.value


def test_the_fake_reproduces_the_documented_signature_example() -> None:
    # The worked example of https://help.aliyun.com/document_detail/101343.html (a GET request).
    params = {
        "AccessKeyId": "testId",
        "Action": "SendSms",
        "Format": "XML",
        "OutId": "123",
        "PhoneNumbers": "15300000001",
        "RegionId": "cn-hangzhou",
        "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007",
        "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z",
        "Version": "2017-05-25",
    }
    assert fake_alibaba.signature("GET", params, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


async def test_sends_the_template_and_returns_the_biz_id(
    alibaba: FakeAlibaba, http_session: aiohttp.ClientSession
) -> None:
    job = _job(data={**CODE, "product": PRODUCT})

    sent = await AlibabaSms(_account(alibaba), http_session).send(job)

    [received] = alibaba.received
    params = received.params
    assert received.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert {
        k: params[k] for k in ("Action", "Version", "Format", "RegionId", "SignatureMethod", "SignatureVersion")
    } == {
        "Action": "SendSms",
        "Version": "2017-05-25",
        "Format": "JSON",
        "RegionId": "cn-hangzhou",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
    }
    assert params["AccessKeyId"] == alibaba.access_key_id
    assert params["PhoneNumbers"] == "13800138000"
    assert params["SignName"] == "阿里云短信测试"
    assert params["TemplateCode"] == "SMS_154950909"
    assert json.loads(params["TemplateParam"]) == {"code": "482910", "product": PRODUCT}
    assert params["OutId"] == job.delivery_id
    assert params["Signature"] == fake_alibaba.signature("POST", params, alibaba.access_key_secret)
    assert sent.provider_message_id == alibaba.issued[0]


async def test_international_numbers_keep_their_country_code(
    alibaba: FakeAlibaba, http_session: aiohttp.ClientSession
) -> None:
    account = _account(alibaba, region_id="cn-shanghai")

    await AlibabaSms(account, http_session).send(_job("+85291234567"))

    [received] = alibaba.received
    assert received.params["PhoneNumbers"] == "85291234567"
    assert received.params["RegionId"] == "cn-shanghai"


async def test_a_template_without_variables_sends_no_template_param(
    alibaba: FakeAlibaba, http_session: aiohttp.ClientSession
) -> None:
    await AlibabaSms(_account(alibaba), http_session).send(_job(data={"template_code": "SMS_NOTICE"}))

    [received] = alibaba.received
    assert "TemplateParam" not in received.params


async def test_content_without_a_template_code_is_permanent(
    alibaba: FakeAlibaba, http_session: aiohttp.ClientSession
) -> None:
    error = await _refusal(AlibabaSms(_account(alibaba), http_session), _job(data={"code": "482910"}))

    assert error.failure is Failure.PERMANENT
    assert "the sms content for Alibaba needs data[template_code]" in error.reason
    assert alibaba.received == []


async def test_an_address_that_is_no_phone_number_is_permanent(
    alibaba: FakeAlibaba, http_session: aiohttp.ClientSession
) -> None:
    error = await _refusal(AlibabaSms(_account(alibaba), http_session), _job("ann@example.com"))

    assert error.failure is Failure.PERMANENT
    assert "not a phone number" in error.reason and "ann@example.com" not in error.reason
    assert alibaba.received == []


async def test_an_outage_is_retryable(alibaba: FakeAlibaba, http_session: aiohttp.ClientSession) -> None:
    alibaba.outage = True

    error = await _refusal(AlibabaSms(_account(alibaba), http_session))

    assert error.failure is Failure.RETRYABLE
    assert error.reason.startswith("aliyun-cn: Alibaba SMS ServiceUnavailable: The request has failed")
    assert "RequestId" in error.reason


async def test_a_slow_alibaba_times_out_as_retryable(alibaba: FakeAlibaba, http_session: aiohttp.ClientSession) -> None:
    alibaba.delay = 2.0

    error = await _refusal(AlibabaSms(_account(alibaba, timeout=0.3), http_session))

    assert error.failure is Failure.RETRYABLE
    assert error.reason == "aliyun-cn timed out after 0.3s"


@pytest.mark.parametrize(("window", "retry_after"), [("分钟级", 60.0), ("小时级", 3600.0)])
async def test_per_number_flow_control_is_rate_limited_for_its_window(
    alibaba: FakeAlibaba, http_session: aiohttp.ClientSession, window: str, retry_after: float
) -> None:
    alibaba.flow_control = window

    error = await _refusal(AlibabaSms(_account(alibaba), http_session))

    assert error.failure is Failure.RATE_LIMITED
    assert error.retry_after == retry_after
    assert "isv.BUSINESS_LIMIT_CONTROL" in error.reason and window in error.reason


async def test_api_throttling_is_rate_limited(alibaba: FakeAlibaba, http_session: aiohttp.ClientSession) -> None:
    alibaba.throttled = True

    error = await _refusal(AlibabaSms(_account(alibaba), http_session))

    assert error.failure is Failure.RATE_LIMITED
    assert "Throttling.User: Request was denied due to user flow control." in error.reason


async def test_a_wrong_secret_is_bad_credentials_without_echoing_the_request(
    alibaba: FakeAlibaba, http_session: aiohttp.ClientSession
) -> None:
    error = await _refusal(AlibabaSms(_account(alibaba, secret="not-the-secret"), http_session))

    assert error.failure is Failure.BAD_CREDENTIALS
    assert "SignatureDoesNotMatch: Specified signature is not matched with our calculation." in error.reason
    # Alibaba's message goes on to quote the string to sign: the phone number and the verification code.
    assert "string to sign" not in error.reason
    assert "13800138000" not in error.reason and "482910" not in error.reason
    assert "not-the-secret" not in error.reason


async def test_an_unknown_access_key_is_bad_credentials(
    alibaba: FakeAlibaba, http_session: aiohttp.ClientSession
) -> None:
    error = await _refusal(AlibabaSms(_account(alibaba, key_id="LTAI-unknown"), http_session))

    assert error.failure is Failure.BAD_CREDENTIALS
    assert "InvalidAccessKeyId.NotFound: Specified access key is not found." in error.reason


async def test_an_empty_balance_fails_over_to_another_account(
    alibaba: FakeAlibaba, http_session: aiohttp.ClientSession
) -> None:
    alibaba.balance_exhausted = True

    error = await _refusal(AlibabaSms(_account(alibaba), http_session))

    assert error.failure is Failure.BAD_CREDENTIALS
    assert "isv.AMOUNT_NOT_ENOUGH" in error.reason


@pytest.mark.parametrize(
    ("address", "data", "code"),
    [
        ("+8612345", CODE, "isv.MOBILE_NUMBER_ILLEGAL"),
        (TO, {"template_code": "SMS_NOT_APPROVED", "code": "1"}, "isv.SMS_TEMPLATE_ILLEGAL"),
        (TO, {"template_code": "SMS_154950909"}, "isv.TEMPLATE_MISSING_PARAMETERS"),
    ],
)
async def test_documented_refusals_of_the_message_are_permanent(
    alibaba: FakeAlibaba, http_session: aiohttp.ClientSession, address: str, data: dict[str, str], code: str
) -> None:
    error = await _refusal(AlibabaSms(_account(alibaba), http_session), _job(address, data))

    assert error.failure is Failure.PERMANENT
    assert f"aliyun-cn: Alibaba SMS {code}: " in error.reason


def test_alibaba_does_not_deduplicate() -> None:
    assert AlibabaSms.channel == "sms"
    assert AlibabaSms.idempotent is False


def _report(token: str, *reports: dict[str, object]) -> Callback:
    return Callback(query={"token": token}, headers={}, body=json.dumps(list(reports)).encode())


async def test_sms_reports_are_read_when_the_address_carries_the_accounts_token(
    alibaba: FakeAlibaba, http_session: aiohttp.ClientSession
) -> None:
    account = replace(_account(alibaba), secrets={**_account(alibaba).secrets, "receipt_token": "t0ken"})
    receipts = await AlibabaSms(account, http_session).receipts(
        _report(
            "t0ken",
            {"biz_id": "900^0", "success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功"},
            {"biz_id": "901^0", "success": False, "err_code": "MK:0001", "err_msg": "用户接收失败"},
        )
    )
    assert receipts.reports == [
        Receipt("900^0", True),
        Receipt("901^0", False, "aliyun-cn: Alibaba SMS reported MK:0001: 用户接收失败"),
    ]
    assert json.loads(receipts.answer)["code"] == 0


@pytest.mark.parametrize("token", ["", "guess"])
async def test_sms_reports_without_the_token_are_refused(
    alibaba: FakeAlibaba, http_session: aiohttp.ClientSession, token: str
) -> None:
    account = replace(_account(alibaba), secrets={**_account(alibaba).secrets, "receipt_token": "t0ken"})
    with pytest.raises(ReceiptRefused):
        await AlibabaSms(account, http_session).receipts(_report(token, {"biz_id": "900^0", "success": True}))
