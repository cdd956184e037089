"""A local HTTP endpoint standing in for a customer's webhook receiver.

It records every request and verifies the signature the way a receiver would,
from the documented scheme (Herald-Signature: t=<ts>,v1=HMAC-SHA256(secret, "<ts>.<body>")),
independently of herald's own code. It can be told how to answer the requests to a path; answers are kept per
path, so one test's answers are never taken by a request that another test caused.
"""

import asyncio
import hashlib
import hmac
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from aiohttp import web

Answer = int | tuple[int, dict[str, str]]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool


class WebhookSink:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[Received] = []
        # Per path, answers to give, oldest first: a status, or a status and headers; then 200.
        self._answers: defaultdict[str, deque[Answer]] = defaultdict(deque)
        # Requests to these paths are recorded on arrival but not answered until `release`.
        self.stalled: set[str] = set()
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()
        self.port = 0

    def answer(self, path: str, *answers: Answer) -> None:
        """Answer the next requests to `path` with these, in order (then 200)."""
        self._answers[path].extend(answers)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def verify(self, header: str, body: bytes, tolerance: float = 300) -> bool:
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        if "t" not in parts or "v1" not in parts or abs(time.time() - int(parts["t"])) > tolerance:
            return False
        expected = hmac.new(self.secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, parts["v1"])

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        waiting = self._answers[request.path]
        answer = waiting.popleft() if waiting else 200
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        received = Received(
            path=request.path,
            headers=dict(request.headers),
            body=body,
            signature_ok=self.verify(request.headers.get("Herald-Signature", ""), body),
        )
        async with self._arrived:
            self.received.append(received)
            self._arrived.notify_all()
        if request.path in self.stalled:
            await self._released.wait()
        return web.Response(status=status, headers=headers)

    def release(self) -> None:
        """Answer every stalled request, and stop stalling."""
        self.stalled.clear()
        self._released.set()
        self._released = asyncio.Event()

    def for_path(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, path: str, count: int = 1, timeout: float = 30) -> list[Received]:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.for_path(path)) >= count)
        return self.for_path(path)
