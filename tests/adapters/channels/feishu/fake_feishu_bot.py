"""A local Feishu custom bot endpoint (POST /open-apis/bot/v2/hook/<token>), written from Feishu's
documentation (https://open.feishu.cn/document/ukTMukTMukTM/ucTM5YjL3ETO24yNxkjN) independently of herald's
plug-in: it checks the signature, the keywords and the message format the way Feishu does, throttles a bot
past its messages per minute, and answers with Feishu's code/msg.
"""

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.adapters.channels.fake_provider import FakeHttpProvider

# A request body may be at most 20 KB.
_MAX_BODY = 20 * 1024


@dataclass
class Bot:
    # The signature verification secret, or "" for a bot secured otherwise.
    secret: str = ""
    keywords: tuple[str, ...] = ()
    per_minute: int = 100
    # Messages the bot posted to its group.
    posted: list[dict[str, Any]] = field(default_factory=list)
    # When the bot posted, for its per-minute limit.
    posted_at: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Received:
    token: str
    headers: dict[str, str]
    body: bytes
    # The signature was present and valid.
    signed: bool


@dataclass
class FakeFeishu(FakeHttpProvider[Received]):
    bots: dict[str, Bot] = field(default_factory=dict)
    # Answer like a failing gateway in front of Feishu.
    outage: bool = False

    def add_bot(self, bot: Bot) -> str:
        """The bot's webhook URL."""
        token = secrets.token_hex(16)
        self.bots[token] = bot
        return f"{self.url}/open-apis/bot/v2/hook/{token}"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/open-apis/bot/v2/hook/{token}", self._send)]

    async def _send(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        raw = await request.read()
        bot = self.bots.get(token)
        try:
            message = await request.json()
        except ValueError:
            message = None
        signed = isinstance(message, dict) and bot is not None and bool(bot.secret) and _signed(message, bot.secret)
        self.received.append(Received(token, dict(request.headers), raw, signed))
        await self.stall()
        if self.outage:
            return web.Response(status=503, text="<html><body>503 Service Unavailable</body></html>")
        if bot is None:
            return _answer(19001, "param invalid: incoming webhook access token invalid")
        if bot.secret and not signed:
            return _answer(19021, "sign match fail or timestamp is not within one hour from current time")
        text = _text(message) if isinstance(message, dict) and len(raw) <= _MAX_BODY else None
        if text is None:
            return _answer(9499, "Bad Request")
        if bot.keywords and not any(k in text for k in bot.keywords):
            return _answer(19024, "Key Words Not Found")
        now = time.monotonic()
        bot.posted_at[:] = [t for t in bot.posted_at if now - t < 60]
        if len(bot.posted_at) >= bot.per_minute:
            return _answer(11232, "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]")
        bot.posted_at.append(now)
        bot.posted.append({k: v for k, v in message.items() if k not in ("timestamp", "sign")})
        return _answer(0, "success")


def _signed(message: dict[str, Any], secret: str) -> bool:
    timestamp, sign = message.get("timestamp"), message.get("sign")
    # The timestamp is in seconds, a string, and may be at most an hour off.
    if not isinstance(timestamp, str) or not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 3600:
        return False
    expected = base64.b64encode(hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()
    return isinstance(sign, str) and hmac.compare_digest(expected, sign)


def _text(message: dict[str, Any]) -> str | None:
    """What the keywords are looked for in; None for a message Feishu cannot read."""
    content = message.get("content")
    if message.get("msg_type") == "text" and isinstance(content, dict) and isinstance(content.get("text"), str):
        return str(content["text"])
    if message.get("msg_type") == "post" and isinstance(content, dict):
        try:
            posts = content["post"].values()
            return "".join(
                p["title"] + "".join(e["text"] for line in p["content"] for e in line if e["tag"] == "text")
                for p in posts
            )
        except (AttributeError, KeyError, TypeError):
            return None
    return None


def _answer(code: int, message: str) -> web.Response:
    body: dict[str, Any] = {"code": code, "msg": message, "data": {}}
    if code == 0:
        # Kept by Feishu for old clients.
        body |= {"Extra": None, "StatusCode": 0, "StatusMessage": "success"}
    return web.json_response(body)
