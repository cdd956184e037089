"""A local WeCom API for application messages, written from WeCom's documentation independently of herald's
plug-in: GET /cgi-bin/gettoken?corpid=&corpsecret= issues access tokens
(https://developer.work.weixin.qq.com/document/path/91039), POST /cgi-bin/message/send?access_token= takes a
message for members (https://developer.work.weixin.qq.com/document/path/90236); answers are HTTP 200 with
WeCom's errcode/errmsg (https://developer.work.weixin.qq.com/document/path/90313).
"""

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web

_HINT = ", hint: [1718000000123456789012345], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e={code}"
_MESSAGE_TYPES = frozenset({"text", "markdown"})


@dataclass(frozen=True)
class Delivered:
    touser: str
    message: dict[str, Any]
    msgid: str


class FakeWecomApp:
    def __init__(self, corp_id: str, corp_secret: str, agent_id: int, members: set[str]) -> None:
        self.corp_id, self.corp_secret, self.agent_id, self.members = corp_id, corp_secret, agent_id, members
        self.delivered: list[Delivered] = []
        self.token_requests = 0
        self.send_requests = 0
        # Lifetime of the tokens issued, in seconds.
        self.expires_in = 7200
        # Calls allowed per minute before 45009.
        self.per_minute = 1000
        # Answer like a failing gateway in front of WeCom.
        self.outage = False
        # Seconds to wait before answering message/send.
        self.delay = 0.0
        self.endpoint = ""
        self._tokens: dict[str, float] = {}
        self._sent_at: list[float] = []
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def expire_tokens(self) -> None:
        """Expire every issued token now, as WeCom may before its expires_in."""
        self._tokens = dict.fromkeys(self._tokens, 0.0)

    def revoke_tokens(self) -> None:
        """Forget every issued token, as when the application's secret is reset."""
        self._tokens.clear()

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/cgi-bin/gettoken", self._gettoken)
        app.router.add_post("/cgi-bin/message/send", self._send)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.endpoint = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        self._closing.set()
        if self._runner:
            await self._runner.cleanup()

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
        self.send_requests += 1
        if self.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.delay)
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
