"""A local WeCom API for application messages, written from WeCom's documentation independently of herald's
plug-in: GET /cgi-bin/gettoken?corpid=&corpsecret= issues access tokens
(https://developer.work.weixin.qq.com/document/path/91039), POST /cgi-bin/message/send?access_token= takes a
message for members (https://developer.work.weixin.qq.com/document/path/90236); answers are HTTP 200 with
WeCom's errcode/errmsg (https://developer.work.weixin.qq.com/document/path/90313).
"""

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.adapters.channels.fake_provider import FakeHttpProvider, Request

_HINT = ", hint: [1718000000123456789012345], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e={code}"
_MESSAGE_TYPES = frozenset({"text", "markdown"})


@dataclass(frozen=True)
class Delivered:
    touser: str
    message: dict[str, Any]
    msgid: str


@dataclass
class FakeWecomApp(FakeHttpProvider[Request]):
    """`received`: the message/send requests; `delay` holds those back, not gettoken."""

    corp_id: str
    corp_secret: str
    agent_id: int
    members: set[str]
    delivered: list[Delivered] = field(default_factory=list)
    token_requests: int = 0
    # Lifetime of the tokens issued, in seconds.
    expires_in: int = 7200
    # Calls allowed per minute before 45009.
    per_minute: int = 1000
    # Answer like a failing gateway in front of WeCom.
    outage: bool = False
    _tokens: dict[str, float] = field(default_factory=dict)
    _sent_at: list[float] = field(default_factory=list)

    def expire_tokens(self) -> None:
        """Expire every issued token now, as WeCom may before its expires_in."""
        self._tokens = dict.fromkeys(self._tokens, 0.0)

    def revoke_tokens(self) -> None:
        """Forget every issued token, as when the application's secret is reset."""
        self._tokens.clear()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/cgi-bin/gettoken", self._gettoken), web.post("/cgi-bin/message/send", self._send)]

    async def _gettoken(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        # A fetch takes a moment, so concurrent senders would each start one unless they share it.
        await asyncio.sleep(0.05)
        if request.query.get("corpid") != self.corp_id:
            return _answer(40013, "invalid corpid")
        if request.query.get("corpsecret") != self.corp_secret:
            return _answer(40001, "invalid credential")
        token = secrets.token_urlsafe(48)
        self._tokens[token] = time.monotonic() + self.expires_in
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.expires_in})

    async def _send(self, request: web.Request) -> web.Response:
        self.received.append(await Request.of(request))
        await self.stall()
        if self.outage:
            return web.Response(status=503, text="<html><body>503 Service Unavailable</body></html>")
        expires = self._tokens.get(request.query.get("access_token", ""))
        if expires is None:
            return _answer(40014, "invalid access_token")
        if expires <= time.monotonic():
            return _answer(42001, "access_token expired")
        now = time.monotonic()
        self._sent_at[:] = [t for t in self._sent_at if now - t < 60]
        if len(self._sent_at) >= self.per_minute:
            return _answer(45009, "api freq out of limit")
        self._sent_at.append(now)
        try:
            message = await request.json()
            msgtype, agentid, touser = message["msgtype"], message["agentid"], message["touser"]
            content = message[msgtype]["content"]
        except (ValueError, KeyError, TypeError):
            return _answer(40008, "invalid message type")
        if agentid != self.agent_id:
            return _answer(40056, "invalid agentid")
        if msgtype not in _MESSAGE_TYPES or not isinstance(content, str):
            return _answer(40008, "invalid message type")
        if not content:
            return _answer(44004, "empty content")
        if touser.lower() not in self.members:
            # Every addressed member is invalid, so nothing was sent.
            body = {"errcode": 81013, "errmsg": "user & party & tag all invalid" + _HINT.format(code=81013)}
            return web.json_response(body | {"invaliduser": touser.lower()})
        msgid = secrets.token_urlsafe(32)
        self.delivered.append(Delivered(touser, message, msgid))
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "invaliduser": "", "invalidparty": "", "invalidtag": "", "msgid": msgid}
        )


def _answer(code: int, message: str) -> web.Response:
    return web.json_response({"errcode": code, "errmsg": message + _HINT.format(code=code)})
