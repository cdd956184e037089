"""A local WeCom group robot endpoint (POST /cgi-bin/webhook/send?key=...), written from WeCom's
documentation (https://developer.work.weixin.qq.com/document/path/91770, error codes
https://developer.work.weixin.qq.com/document/path/90313) independently of herald's plug-in: it checks the
message format and size limits, throttles a robot past 20 messages a minute, and answers HTTP 200 with
WeCom's errcode/errmsg either way.
"""

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.adapters.channels.fake_provider import FakeHttpProvider, Request

_HINT = ", hint: [1718000000123456789012345], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e={code}"
# Content limits in bytes, by message type.
_LIMITS = {"text": 2048, "markdown": 4096}


@dataclass
class Robot:
    per_minute: int = 20
    # Messages the robot posted to its group.
    posted: list[dict[str, Any]] = field(default_factory=list)
    posted_at: list[float] = field(default_factory=list)


@dataclass
class FakeWecomRobots(FakeHttpProvider[Request]):
    robots: dict[str, Robot] = field(default_factory=dict)
    # Answer like a failing gateway in front of WeCom.
    outage: bool = False

    def add_robot(self, robot: Robot) -> str:
        """The robot's webhook URL."""
        key = f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(6)}"
        self.robots[key] = robot
        return f"{self.url}/cgi-bin/webhook/send?key={key}"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/cgi-bin/webhook/send", self._send)]

    async def _send(self, request: web.Request) -> web.Response:
        self.received.append(await Request.of(request))
        await self.stall()
        if self.outage:
            return web.Response(status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        robot = self.robots.get(request.query.get("key", ""))
        if robot is None:
            return _answer(93000, "invalid webhook url")
        try:
            message = await request.json()
            msgtype = message["msgtype"]
            content = message[msgtype]["content"]
        except (ValueError, KeyError, TypeError):
            return _answer(40008, "invalid message type")
        if msgtype not in _LIMITS or not isinstance(content, str):
            return _answer(40008, "invalid message type")
        if not content:
            return _answer(44004, "empty content")
        if len(content.encode()) > _LIMITS[msgtype]:
            return _answer(40058, f"{msgtype}.content exceed max length {_LIMITS[msgtype]}. invalid Request Parameter")
        now = time.monotonic()
        robot.posted_at[:] = [t for t in robot.posted_at if now - t < 60]
        if len(robot.posted_at) >= robot.per_minute:
            return _answer(45009, "api freq out of limit")
        robot.posted_at.append(now)
        robot.posted.append(message)
        return web.json_response({"errcode": 0, "errmsg": "ok"})


def _answer(code: int, message: str) -> web.Response:
    return web.json_response({"errcode": code, "errmsg": message + _HINT.format(code=code)})
