"""A local stand-in for Alibaba Cloud SMS `SendSms` (Dysmsapi 2017-05-25), written from Alibaba's public
documentation: the API reference (https://help.aliyun.com/document_detail/55284.html), the signature method
(https://www.alibabacloud.com/help/en/sms/signature-method, https://help.aliyun.com/document_detail/101343.html)
and the API error codes (https://help.aliyun.com/document_detail/101346.html).

It verifies the signature itself, the way the documentation spells it for Java (form-URL-encode, then "+" ->
%20, "*" -> %2A, %7E -> "~"), independently of herald's code; it also rejects stale timestamps and reused
nonces as the gateway does. A gateway refusal is a 4xx/5xx with {RequestId, HostId, Code, Message,
Recommend}; a business refusal is HTTP 200 with Code != "OK".

Delivery reports (SmsReport, HTTP batch push, https://help.aliyun.com/document_detail/101867.html): `report()`
POSTs the JSON array Alibaba pushes to the receiving address set in its console, unsigned, and checks the
answer as Alibaba does: HTTP 200 with a numeric "code"; anything else would be pushed again later.
"""

import base64
import hashlib
import hmac
import json
import random
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import aiohttp
from aiohttp import web

from tests.adapters.channels.fake_provider import FakeHttpProvider

HOST_ID = "dysmsapi.aliyuncs.com"
_COMMON = ("AccessKeyId", "Action", "Format", "SignatureMethod", "SignatureNonce", "SignatureVersion", "Timestamp")
_MAINLAND = re.compile(r"(\+|\+86|0086|86)?1[3-9][0-9]{9}")
_INTERNATIONAL = re.compile(r"[1-9][0-9]{6,14}")


def percent_encode(value: str) -> str:
    return quote_plus(value).replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


def string_to_sign(method: str, params: dict[str, str]) -> str:
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(params[k])}" for k in sorted(params) if k != "Signature")
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"


def signature(method: str, params: dict[str, str], access_key_secret: str) -> str:
    key = (access_key_secret + "&").encode()
    return base64.b64encode(hmac.new(key, string_to_sign(method, params).encode(), hashlib.sha1).digest()).decode()


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    params: dict[str, str]


@dataclass
class FakeAlibaba(FakeHttpProvider[Received]):
    access_key_id: str
    access_key_secret: str
    sign_names: set[str]
    # Approved templates: TemplateCode -> the variables its text uses.
    templates: dict[str, set[str]]
    issued: list[str] = field(default_factory=list)
    # BizId -> (PhoneNumbers, OutId) of each SMS taken, for its delivery report.
    sent_to: dict[str, tuple[str, str]] = field(default_factory=dict)
    outage: bool = False
    # The per-number flow control ("分钟级"/"小时级"/"天级") to answer with, or "".
    flow_control: str = ""
    # The gateway's per-caller API throttling.
    throttled: bool = False
    balance_exhausted: bool = False
    _nonces: set[str] = field(default_factory=set)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/", self._handle)]

    async def report(
        self, receiving_address: str, biz_id: str, *, success: bool = True, err_code: str = "DELIVERED"
    ) -> int:
        """Push one delivery report for an SMS this fake took; returns the HTTP status the receiver answered."""
        number, out_id = self.sent_to[biz_id]
        when = datetime.now(UTC) + timedelta(hours=8)  # Alibaba reports Beijing time
        report = {
            "phone_number": number,
            "send_time": (when - timedelta(seconds=3)).strftime("%Y-%m-%d %H:%M:%S"),
            "report_time": when.strftime("%Y-%m-%d %H:%M:%S"),
            "success": success,
            "err_code": err_code,
            "err_msg": "用户接收成功" if success else "用户接收失败",
            "sms_size": "1",
            "biz_id": biz_id,
            "out_id": out_id,
        }
        async with aiohttp.ClientSession() as session, session.post(receiving_address, json=[report]) as answer:
            if answer.status == 200:
                assert isinstance((await answer.json(content_type=None)).get("code"), int)
            return answer.status

    async def _handle(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.content_type == "application/x-www-form-urlencoded":
            params.update((k, v) for k, v in (await request.post()).items() if isinstance(v, str))
        self.received.append(Received(dict(request.headers), params))
        await self.stall()
        if self.outage:
            return _gateway_error(
                503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server."
            )
        refusal = self._authenticate(request.method, params)
        if refusal is not None:
            return refusal
        if self.throttled:
            return _gateway_error(400, "Throttling.User", "Request was denied due to user flow control.")
        if (params.get("Action"), params.get("Version")) != ("SendSms", "2017-05-25"):
            return _gateway_error(
                404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."
            )
        if params.get("Format") != "JSON":
            return _gateway_error(
                400, "InvalidParameter", "Format must be JSON for this fake (Alibaba defaults to XML)."
            )
        return self._send_sms(params)

    def _authenticate(self, method: str, params: dict[str, str]) -> web.Response | None:
        for name in (*_COMMON, "Signature"):
            if not params.get(name):
                return _gateway_error(400, f"Missing{name}", f"{name} is mandatory for this action.")
        if params["AccessKeyId"] != self.access_key_id:
            return _gateway_error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if (params["SignatureMethod"], params["SignatureVersion"]) != ("HMAC-SHA1", "1.0"):
            return _gateway_error(400, "InvalidSignatureMethod", "Specified signature method is not valid.")
        expected = signature(method, params, self.access_key_secret)
        if not hmac.compare_digest(expected, params["Signature"]):
            return _gateway_error(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation. server string to sign is:"
                + string_to_sign(method, params),
            )
        try:
            sent_at = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return _gateway_error(
                400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted."
            )
        if abs(datetime.now(UTC) - sent_at) > timedelta(minutes=15):
            return _gateway_error(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        if params["SignatureNonce"] in self._nonces:
            return _gateway_error(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self._nonces.add(params["SignatureNonce"])
        return None

    def _send_sms(self, params: dict[str, str]) -> web.Response:
        number = params.get("PhoneNumbers", "")
        if not (_MAINLAND.fullmatch(number) or _INTERNATIONAL.fullmatch(number)):
            return _business("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if params.get("SignName") not in self.sign_names:
            return _business("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        variables = self.templates.get(params.get("TemplateCode", ""))
        if variables is None:
            return _business("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        try:
            values = json.loads(params.get("TemplateParam", "{}"))
        except ValueError:
            return _business("isv.INVALID_JSON_PARAM", "JSON参数不合法,只接受字符串值")
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            return _business("isv.INVALID_JSON_PARAM", "JSON参数不合法,只接受字符串值")
        if not variables <= values.keys():
            return _business("isv.TEMPLATE_MISSING_PARAMETERS", "模板缺少变量")
        if self.balance_exhausted:
            return _business("isv.AMOUNT_NOT_ENOUGH", "账户余额不足")
        if self.flow_control:
            permits = {"分钟级": 1, "小时级": 5, "天级": 10}[self.flow_control]
            return _business("isv.BUSINESS_LIMIT_CONTROL", f"触发{self.flow_control}流控Permits:{permits}")
        biz_id = f"{random.randrange(10**17, 10**18)}^0"
        self.issued.append(biz_id)
        self.sent_to[biz_id] = (number, params.get("OutId", ""))
        return web.json_response({"Message": "OK", "RequestId": _request_id(), "Code": "OK", "BizId": biz_id})


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


def _business(code: str, message: str) -> web.Response:
    return web.json_response({"Message": message, "RequestId": _request_id(), "Code": code})


def _gateway_error(status: int, code: str, message: str) -> web.Response:
    request_id = _request_id()
    return web.json_response(
        {
            "RequestId": request_id,
            "HostId": HOST_ID,
            "Code": code,
            "Message": message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product=Dysmsapi&requestId={request_id}",
        },
        status=status,
    )
