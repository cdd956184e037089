"""A local APNs: a real HTTP/2 server over TLS (ALPN h2, a trustme CA) on 127.0.0.1, a raw ASGI app on hypercorn.

It checks a notification request the way Apple documents it, independently of herald's code:
POST /3/device/<token>, `authorization: bearer <JWT>` where the JWT is ES256-signed with the team's .p8 key
(header kid = key id, claims iss = team id, iat no older than an hour), apns-topic, apns-push-type,
apns-priority, apns-id, apns-collapse-id, apns-expiration, and a JSON payload of at most 4 KB. Like Apple it
refuses a new provider token on the same connection within 20 minutes of the previous one.
Answers: 200 with apns-id, or a status and {"reason": ...} from Apple's table of error strings.
"""

import asyncio
import json
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import jwt
import trustme
from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope

from tests.adapters.channels.fake_provider import FakeProvider

_MAX_PAYLOAD = 4096
_TOKEN_MAX_AGE = 3600
_TOKEN_MIN_REFRESH = 20 * 60
_PUSH_TYPES = frozenset(
    {"alert", "background", "location", "voip", "complication", "fileprovider", "mdm", "liveactivity"}
)
_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Received:
    http_version: str
    device_token: str
    headers: dict[str, str]
    payload: dict[str, object]
    claims: dict[str, object]
    jwt_header: dict[str, object]


@dataclass
class _Connection:
    token: str
    since: float


@dataclass
class FakeApns(FakeProvider[Received]):
    scheme: ClassVar[str] = "https"
    team_id: str
    key_id: str
    bundle_id: str
    # The public half of the team's .p8 key, PEM: what Apple holds to verify provider tokens.
    public_key: str
    tmp_path: Path
    # Every distinct provider token that passed verification, in order of first use.
    tokens: list[str] = field(default_factory=list)
    # Knobs a test turns: answer this 5xx, rate-limit the device, pretend the clock is `clock_offset` seconds
    # ahead (to age provider tokens).
    outage: int = 0
    rate_limited: bool = False
    clock_offset: float = 0.0
    unregistered: set[str] = field(default_factory=set)
    ca_file: str = ""
    _connections: dict[tuple[str, int], _Connection] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    async def _listen(self, port: int) -> int:
        ca = trustme.CA()
        server_cert = ca.issue_cert("127.0.0.1")
        self.ca_file = str(self.tmp_path / "apns-ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        chain = self.tmp_path / "apns-server.pem"
        server_cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        bound: int = sock.getsockname()[1]
        config = Config()
        config.bind = [f"fd://{sock.detach()}"]
        config.certfile = config.keyfile = str(chain)
        config.accesslog = None
        config.graceful_timeout = 0.5
        self._task = asyncio.create_task(serve(self._app, config, shutdown_trigger=self._stopping.wait))
        return bound

    async def _close(self) -> None:
        if self._task is not None:
            await self._task

    async def _app(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "lifespan":
            while (event := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            if event["type"] != "http.request":
                return
            body += event["body"]
            if not event["more_body"]:
                break
        status, headers, answer = await self._answer(scope, body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
                "trailers": False,
            }
        )
        await send({"type": "http.response.body", "body": answer, "more_body": False})

    async def _answer(self, scope: HTTPScope, body: bytes) -> tuple[int, dict[str, str], bytes]:
        await self.stall()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if scope["method"] != "POST":
            return _refuse(405, "MethodNotAllowed")
        if not scope["path"].startswith("/3/device/"):
            return _refuse(404, "BadPath")
        device_token = scope["path"].removeprefix("/3/device/")
        if not device_token:
            return _refuse(400, "MissingDeviceToken")
        auth = headers.get("authorization", "")
        if not auth.startswith("bearer "):
            return _refuse(403, "MissingProviderToken")
        token = auth.removeprefix("bearer ")
        try:
            jwt_header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"], options={"require": ["iss", "iat"]})
        except jwt.PyJWTError:
            return _refuse(403, "InvalidProviderToken")
        if jwt_header.get("alg") != "ES256" or jwt_header.get("kid") != self.key_id or claims["iss"] != self.team_id:
            return _refuse(403, "InvalidProviderToken")
        now = time.time() + self.clock_offset
        assert scope["client"] is not None
        connection = self._connections.get(scope["client"])
        if now - int(claims["iat"]) > _TOKEN_MAX_AGE:
            self._connections.pop(scope["client"], None)
            return _refuse(403, "ExpiredProviderToken")
        if connection is None or connection.token != token:
            if connection is not None and now - connection.since < _TOKEN_MIN_REFRESH:
                return _refuse(429, "TooManyProviderTokenUpdates")
            self._connections[scope["client"]] = _Connection(token, now)
            if token not in self.tokens:
                self.tokens.append(token)
        if "apns-topic" not in headers:
            return _refuse(400, "MissingTopic")
        if headers["apns-topic"] != self.bundle_id:
            return _refuse(400, "DeviceTokenNotForTopic")
        if headers.get("apns-push-type") not in _PUSH_TYPES:
            return _refuse(400, "InvalidPushType")
        if headers.get("apns-priority", "10") not in ("5", "10"):
            return _refuse(400, "BadPriority")
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        if not _CANONICAL_UUID.match(apns_id):
            return _refuse(400, "BadMessageId")
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return _refuse(400, "BadCollapseId")
        if not headers.get("apns-expiration", "0").isdigit():
            return _refuse(400, "BadExpirationDate")
        if not body:
            return _refuse(400, "PayloadEmpty")
        if len(body) > _MAX_PAYLOAD:
            return _refuse(413, "PayloadTooLarge")
        if not re.fullmatch(r"[0-9a-f]{64,200}", device_token):
            return _refuse(400, "BadDeviceToken")
        self.received.append(
            Received(scope["http_version"], device_token, headers, json.loads(body), claims, jwt_header)
        )
        if self.outage:
            return _refuse(self.outage, "ServiceUnavailable" if self.outage == 503 else "InternalServerError")
        if self.rate_limited:
            return _refuse(429, "TooManyRequests")
        if device_token in self.unregistered:
            answer = {"reason": "Unregistered", "timestamp": int(now * 1000)}
            return 410, {"content-type": "application/json"}, json.dumps(answer).encode()
        return 200, {"apns-id": apns_id}, b""


def _refuse(status: int, reason: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, json.dumps({"reason": reason}).encode()
