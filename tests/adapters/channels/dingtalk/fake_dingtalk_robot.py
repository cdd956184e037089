"""A local DingTalk custom robot endpoint (POST /robot/send?access_token=...), written from DingTalk's
documentation (https://open.dingtalk.com/document/orgapp/custom-robot-access) independently of herald's
plug-in: it checks the signature (加签), the keywords and the message format the way DingTalk does, throttles
a robot past its messages per minute, and answers HTTP 200 with DingTalk's errcode/errmsg either way.
"""

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.adapters.channels.fake_provider import FakeHttpProvider

_MORE = ", more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"


@dataclass
class Robot:
    # The signing secret (SEC...), or "" for a robot secured otherwise.
    secret: str = ""
    keywords: tuple[str, ...] = ()
    per_minute: int = 20
    # Messages the robot posted to its group.
    posted: list[dict[str, Any]] = field(default_factory=list)
    # When the robot posted, for its per-minute limit.
    posted_at: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Received:
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    # The signature was present and valid.
    signed: bool


@dataclass
class FakeDingTalk(FakeHttpProvider[Received]):
    robots: dict[str, Robot] = field(default_factory=dict)
    # Answer like a failing gateway in front of DingTalk.
    outage: bool = False

    def add_robot(self, robot: Robot) -> str:
        """The robot's webhook URL."""
        token = secrets.token_hex(32)
        self.robots[token] = robot
        return f"{self.url}/robot/send?access_token={token}"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/robot/send", self._send)]

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.read()
        robot = self.robots.get(request.query.get("access_token", ""))
        signed = robot is not None and bool(robot.secret) and _signature_ok(request.query, robot.secret)
        self.received.append(Received(dict(request.query), dict(request.headers), body, signed))
        await self.stall()
        if self.outage:
            return web.Response(status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        if "access_token" not in request.query:
            return _answer(40035, "缺少参数 access_token")
        if robot is None:
            return _answer(300005, "token is not exist")
        if request.content_type != "application/json":
            return _answer(43004, "无效的HTTP HEADER Content-Type")
        if robot.secret and not signed:
            return _answer(310000, "sign not match" + _MORE)
        try:
            message = await request.json()
            text = _text(message)
        except (ValueError, KeyError, TypeError):
            return _answer(40035, "缺少参数 json")
        if text is None:
            return _answer(400105, "不支持的消息类型")
        if robot.keywords and not any(k in text for k in robot.keywords):
            return _answer(310000, "keywords not in content" + _MORE)
        now = time.monotonic()
        robot.posted_at[:] = [t for t in robot.posted_at if now - t < 60]
        if len(robot.posted_at) >= robot.per_minute:
            return _answer(130101, "send too fast, exceed 20 times per minute")
        robot.posted_at.append(now)
        robot.posted.append(message)
        return _answer(0, "ok")


def _signature_ok(query: Mapping[str, str], secret: str) -> bool:
    timestamp, sign = query.get("timestamp", ""), query.get("sign", "")
    # The timestamp is in milliseconds and may be at most an hour off.
    if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > 3_600_000:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(expected).decode(), sign)


def _text(message: dict[str, Any]) -> str | None:
    """What the keywords are looked for in; None for a message type DingTalk does not know."""
    if message["msgtype"] == "text":
        return str(message["text"]["content"])
    if message["msgtype"] == "markdown":
        return f"{message['markdown']['title']}{message['markdown']['text']}"
    return None


def _answer(code: int, message: str) -> web.Response:
    return web.json_response({"errcode": code, "errmsg": message})
