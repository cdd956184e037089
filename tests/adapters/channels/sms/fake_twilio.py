"""A local stand-in for Twilio's Messages API, written from Twilio's public reference
(https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource and
https://www.twilio.com/docs/api/errors): POST /2010-04-01/Accounts/{AccountSid}/Messages.json, form-encoded,
HTTP basic auth AccountSid:AuthToken, 201 with the Message resource, errors as {code, message, more_info, status}.

It checks the request as Twilio would, records it, and can be told to fail, be slow, rate-limit, refuse the
credentials (by being given other ones) or refuse a 'To' number.

Status callbacks (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status,
https://www.twilio.com/docs/usage/security#validating-requests): `report()` POSTs a message's status to the
StatusCallback URL it was created with, form-encoded, signed in X-Twilio-Signature with the auth token.
"""

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.adapters.channels.fake_provider import FakeHttpProvider

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


@dataclass(frozen=True)
class Received:
    account_sid: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class FakeTwilio(FakeHttpProvider[Received]):
    account_sid: str
    auth_token: str
    issued: list[str] = field(default_factory=list)
    # MessageSid -> the form it was created with, for its status callbacks.
    messages: dict[str, dict[str, str]] = field(default_factory=dict)
    # Set to make the next calls fail or be rate-limited.
    outage: bool = False
    rate_limited: bool = False
    # 'To' numbers Twilio answers with 21614 (not a mobile number).
    not_mobile: set[str] = field(default_factory=set)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/2010-04-01/Accounts/{sid}/Messages.json", self._create_message)]

    async def _create_message(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.received.append(Received(sid, dict(request.headers), form))
        await self.stall()
        if self.outage:
            return _error(500, 20500, "Internal Server Error")
        if not self._authenticated(request, sid):
            return _error(
                401,
                20003,
                "Authenticate",
                detail="Your AccountSid or AuthToken was incorrect.",
                headers={"WWW-Authenticate": 'Basic realm="Twilio API"'},
            )
        if self.rate_limited:
            return _error(429, 20429, "Too Many Requests")
        if request.content_type != "application/x-www-form-urlencoded":
            return _error(400, 21000, "Invalid content type")
        to = form.get("To", "")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return _error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message.")
        if not form.get("Body"):
            return _error(400, 21602, "Message body is required.")
        if not _E164.fullmatch(to):
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in self.not_mobile:
            return _error(400, 21614, f"'To' number {to} is not a valid mobile number")
        message_sid = "SM" + secrets.token_hex(16)
        self.issued.append(message_sid)
        self.messages[message_sid] = form
        return web.json_response(
            {
                "account_sid": sid,
                "api_version": "2010-04-01",
                "body": form["Body"],
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "num_segments": "1",
                "sid": message_sid,
                "status": "accepted" if form.get("MessagingServiceSid") else "queued",
                "to": to,
                "uri": f"/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json",
            },
            status=201,
        )

    async def report(self, message_sid: str, status: str, error_code: str = "", *, signed_with: str = "") -> int:
        """POST a status callback for a message this fake took; returns the HTTP status the receiver answered.
        `signed_with` signs with another token, as a forger would."""
        created = self.messages[message_sid]
        url = created["StatusCallback"]
        form = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": created.get("From", ""),
            "MessageSid": message_sid,
            "MessageStatus": status,
            "SmsSid": message_sid,
            "SmsStatus": status,
            "To": created["To"],
        }
        if error_code:
            form["ErrorCode"] = error_code
        answered, _ = await self._post_signed(url, form, signed_with)
        return answered

    async def text(self, url: str, sender: str, body: str, *, signed_with: str = "") -> tuple[int, str]:
        """POST what Twilio posts to a number's incoming-message webhook when `sender` texts `body` to it; the
        receiver's HTTP status and answer (TwiML)."""
        form = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "Body": body,
            "From": sender,
            "FromCountry": "US",
            "MessageSid": "SM" + secrets.token_hex(16),
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsMessageSid": "SM" + secrets.token_hex(16),
            "SmsStatus": "received",
            "To": "+15005550006",
        }
        return await self._post_signed(url, form, signed_with)

    async def _post_signed(self, url: str, form: dict[str, str], signed_with: str) -> tuple[int, str]:
        """POST `form` signed as Twilio signs its webhooks (X-Twilio-Signature); `signed_with` signs with another
        token, as a forger would."""
        signed = url + "".join(name + form[name] for name in sorted(form))
        key = (signed_with or self.auth_token).encode()
        signature = base64.b64encode(hmac.new(key, signed.encode(), hashlib.sha1).digest()).decode()
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=form, headers={"X-Twilio-Signature": signature}) as answer,
        ):
            return answer.status, await answer.text()

    def _authenticated(self, request: web.Request, sid: str) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return False
        return (
            user == sid
            and secrets.compare_digest(user, self.account_sid)
            and secrets.compare_digest(password, self.auth_token)
        )


def _error(
    status: int, code: int, message: str, *, detail: str = "", headers: dict[str, str] | None = None
) -> web.Response:
    body: dict[str, object] = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    if detail:
        body["detail"] = detail
    return web.json_response(body, status=status, headers=headers)
