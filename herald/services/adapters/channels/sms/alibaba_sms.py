"""Alibaba Cloud SMS `SendSms` (Dysmsapi 2017-05-25) over the signed RPC-style HTTP API.

Signature version 1.0: every parameter but Signature, sorted by name and percent-encoded per RFC 3986 (space
as %20, "~" kept), joined into a canonical query; StringToSign = "POST&%2F&" + percentEncode(that query);
Signature = Base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign)).

Alibaba sends only templates it approved: data["template_code"] names one and the other data entries fill its
variables; the body herald rendered is not sent. A business refusal comes as HTTP 200 with Code != "OK", the
gateway's own (signature, key, throttling) as 4xx/5xx with the same JSON shape; both are read from Code.

Not idempotent: the SendSms reference says the API does not de-duplicate. OutId carries the delivery id.

Delivery receipts (SmsReport, "HTTP batch push"): Alibaba POSTs a JSON array of reports, each naming the BizId
SendSms returned, to the address set in its console, and expects {"code": 0} back. Alibaba does not sign these
requests, so the address carries a secret instead: `/v1/receipts/<account>?token=<receipt_token>`, where
receipt_token is one of the account's credentials, compared in constant time.
"""

import base64
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from herald.internal.v1 import work_pb2
from herald.libs.masking import mask
from herald.services.adapters.channels import http
from herald.services.adapters.channels.base import (
    Callback,
    DeliveryError,
    Failure,
    Provider,
    Receipt,
    ReceiptRefused,
    Receipts,
    Sent,
)

DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com"
DEFAULT_REGION = "cn-hangzhou"

_CREDENTIALS = Failure.BAD_CREDENTIALS
_FAILURES = {
    "InvalidAccessKeyId.NotFound": _CREDENTIALS,
    "InvalidAccessKeyId.Inactive": _CREDENTIALS,
    "SignatureDoesNotMatch": _CREDENTIALS,
    "isp.RAM_PERMISSION_DENY": _CREDENTIALS,
    # The account cannot send anything until its owner acts (tops up, subscribes, gets the sign name approved,
    # raises its own daily or monthly cap): retrying it cannot help, another account can.
    "isv.AMOUNT_NOT_ENOUGH": _CREDENTIALS,
    "isv.OUT_OF_SERVICE": _CREDENTIALS,
    "isv.PRODUCT_UN_SUBSCRIPT": _CREDENTIALS,
    "isv.PRODUCT_UNSUBSCRIBE": _CREDENTIALS,
    "isv.ACCOUNT_NOT_EXISTS": _CREDENTIALS,
    "isv.ACCOUNT_ABNORMAL": _CREDENTIALS,
    "isv.SMS_SIGNATURE_ILLEGAL": _CREDENTIALS,
    "isv.DAY_LIMIT_CONTROL": _CREDENTIALS,
    "isv.MONTH_LIMIT_CONTROL": _CREDENTIALS,
    # Per recipient number (BUSINESS_LIMIT_CONTROL) or per caller (Throttling).
    "isv.BUSINESS_LIMIT_CONTROL": Failure.RATE_LIMITED,
    "Throttling": Failure.RATE_LIMITED,
    "Throttling.User": Failure.RATE_LIMITED,
    "Throttling.Api": Failure.RATE_LIMITED,
    # The next attempt signs with a fresh timestamp and nonce.
    "InvalidTimeStamp.Expired": Failure.RETRYABLE,
    "SignatureNonceUsed": Failure.RETRYABLE,
    "ServiceUnavailable": Failure.RETRYABLE,
    "InternalError": Failure.RETRYABLE,
    "isp.SYSTEM_ERROR": Failure.RETRYABLE,
}
# BUSINESS_LIMIT_CONTROL says which per-number window is full ("触发分钟级流控Permits:1").
_LIMIT_WINDOWS = {"分钟级": 60.0, "小时级": 3600.0, "天级": 86400.0}
# A SignatureDoesNotMatch message goes on to echo the whole request: phone number and template values.
_ECHO = " server string to sign is:"


def percent_encode(value: str) -> str:
    return quote(value, safe="~")


def _query(params: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in params)


def sign(params: dict[str, str], secret: str) -> str:
    string_to_sign = f"POST&{percent_encode('/')}&{percent_encode(_query(sorted(params.items())))}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def phone_number(address: str) -> str:
    """Alibaba takes mainland numbers bare and others as country code + number, neither with "+"."""
    number = address.removeprefix("+86") if address.startswith("+86") else address.removeprefix("+")
    if not re.fullmatch(r"[0-9]{5,15}", number):
        raise DeliveryError(f"'{mask(address)}' is not a phone number Alibaba SMS can send to", Failure.PERMANENT)
    return number


class AlibabaSms(Provider):
    channel = "sms"

    async def send(self, job: work_pb2.DeliveryJob) -> Sent:
        account = self.account
        variables = dict(job.data)
        template = variables.pop("template_code", "")
        if not template:
            raise DeliveryError(
                "the sms content for Alibaba needs data[template_code], the code of an approved Alibaba template",
                Failure.PERMANENT,
            )
        params = {
            "AccessKeyId": account.secret("access_key_id"),
            "Action": "SendSms",
            "Format": "JSON",
            "OutId": job.delivery_id,
            "PhoneNumbers": phone_number(job.address),
            "RegionId": account.settings.get("region_id") or DEFAULT_REGION,
            "SignName": account.setting("sign_name"),
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": str(uuid.uuid4()),
            "SignatureVersion": "1.0",
            "TemplateCode": template,
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
        }
        if variables:
            params["TemplateParam"] = json.dumps(variables, ensure_ascii=False, separators=(",", ":"))
        params["Signature"] = sign(params, account.secret("access_key_secret"))
        response = await http.call(
            self,
            "POST",
            f"{account.url(DEFAULT_ENDPOINT)}/",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            data=_query(params.items()).encode(),
        )
        answer = response.json()
        if response.ok and answer.get("Code") == "OK":
            return Sent(provider_message_id=str(answer.get("BizId", "")))
        raise self._error(response, answer)

    async def receipts(self, callback: Callback) -> Receipts:
        token = self.account.secrets.get("receipt_token", "")
        if not token or not hmac.compare_digest(callback.query.get("token", "").encode(), token.encode()):
            raise ReceiptRefused("the receipt address's token does not match the account's receipt_token")
        try:
            reports = json.loads(callback.body)
            receipts = [_receipt(self.account.name, r) for r in reports]
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise ReceiptRefused(f"not an SmsReport JSON array: {e}") from None
        return Receipts(receipts, json.dumps({"code": 0, "msg": "接收成功"}, ensure_ascii=False), "application/json")

    def _error(self, response: http.Response, answer: Any) -> DeliveryError:
        code = str(answer.get("Code", ""))
        message = mask(str(answer.get("Message", "")).split(_ECHO)[0])
        if not code:
            return http.status_error(self.account.name, response, message)
        request = f" (RequestId {answer['RequestId']})" if answer.get("RequestId") else ""
        reason = f"{self.account.name}: Alibaba SMS {code}: {message}{request}"
        failure = _FAILURES.get(code)
        if failure is None:
            # An unknown refusal of this message (HTTP 200), or whatever the gateway's HTTP status means.
            failure = Failure.PERMANENT if response.ok else http.status_error(self.account.name, response).failure
        retry_after = None
        if failure is Failure.RATE_LIMITED:
            windows = (seconds for window, seconds in _LIMIT_WINDOWS.items() if window in message)
            retry_after = next(windows, response.retry_after())
        return DeliveryError(reason, failure, retry_after=retry_after)


def _receipt(account: str, report: dict[str, Any]) -> Receipt:
    delivered = report["success"] is True
    reason = (
        ""
        if delivered
        else f"{account}: Alibaba SMS reported {report.get('err_code', '')}: {report.get('err_msg', '')}"
    )
    return Receipt(str(report["biz_id"]), delivered, reason)
