"""CORS for the browsers of HERALD_GATEWAY_CORS_ORIGINS, with the headers Connect and gRPC-Web clients send and
read (connectrpc.com/docs/cors). A request from any other origin is served as if no browser asked - without the
headers that would let a page read the answer - and its preflight is refused, so a page elsewhere cannot call
herald with a user's credentials."""

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Event = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Event]]
Send = Callable[[Event], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

ALLOWED_METHODS = "GET, POST"
ALLOWED_HEADERS = ", ".join(
    (
        "Authorization",
        "Content-Type",
        "Connect-Protocol-Version",
        "Connect-Timeout-Ms",
        "Connect-Accept-Encoding",
        "Connect-Content-Encoding",
        "Grpc-Timeout",
        "X-Grpc-Web",
        "X-User-Agent",
        "Traceparent",
    )
)
EXPOSED_HEADERS = ", ".join(
    (
        "Grpc-Status",
        "Grpc-Message",
        "Grpc-Status-Details-Bin",
        "Retry-After",
        "Content-Encoding",
        "Connect-Content-Encoding",
    )
)
# How long a browser may keep a preflight's answer.
MAX_AGE_SECONDS = "7200"


class Cors:
    def __init__(self, app: App, origins: Iterable[str]) -> None:
        self._app = app
        self._origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin", b"").decode("latin-1")
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await self._preflight(origin, send)
            return
        if origin not in self._origins:
            await self._app(scope, receive, send)
            return

        async def send_allowed(event: Event) -> None:
            if event["type"] == "http.response.start":
                event["headers"] = [
                    *event.get("headers", ()),
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-expose-headers", EXPOSED_HEADERS.encode()),
                    (b"vary", b"Origin"),
                ]
            await send(event)

        await self._app(scope, receive, send_allowed)

    async def _preflight(self, origin: str, send: Send) -> None:
        if origin in self._origins:
            status = 204
            headers = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
                (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                (b"access-control-max-age", MAX_AGE_SECONDS.encode()),
                (b"vary", b"Origin"),
            ]
        else:
            status, headers = 403, [(b"vary", b"Origin")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
