"""Apps' bearer credentials, shared by every gRPC service (operators' are herald/libs/callers.py's).

App API keys are created by intake, which publishes each key's SHA-256 (never
the key) with the app's identity into the NATS KV bucket `herald_app_keys`; every
service resolves a key there, so no service reads intake's tables. An API key is 256 random bits, so a
plain SHA-256 is a safe way to store it (no password stretching needed).

Each process caches what it resolved for CACHE_SECONDS, so a Send costs no round
trip; a change (a disabled app, a key rotated out) is announced on core NATS
(subjects.APP_KEYS_CHANGED) and every process drops that key from its cache at
once. The cache's age bounds only a notice a process missed while disconnected.
"""

import asyncio
import hashlib
import json
import secrets
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import grpc
from nats.js.errors import KeyDeletedError, KeyNotFoundError, NoKeysError

from herald.libs import categories, subjects
from herald.libs.bus import Bucket, MessageBus
from herald.libs.errors import PermissionDenied, Unauthenticated

KEY_PREFIX = "hk_"
BUCKET = "herald_app_keys"
CACHE_SECONDS = 5.0

# The app whose credential (its key, or an inbox token it issued) the current call authenticated with ("" if none
# did): the audit trail's actor.
CALLING_APP: ContextVar[str] = ContextVar("calling_app", default="")


@dataclass(frozen=True)
class AppIdentity:
    """What a key stands for, as every service sees it in the registry."""

    app_id: str
    name: str
    allowed_channels: list[str] = field(default_factory=list)
    # herald.v1.Category values; empty = every category.
    allowed_categories: list[int] = field(default_factory=list)
    rate_limit_per_second: float = 0.0
    disabled: bool = False
    # Unix time after which this key stops working (it was rotated out); None = no end.
    key_expires_at: float | None = None
    # herald.v1.QuietHours as JSON, for recipients who set none; None = the default window.
    quiet_hours: dict[str, Any] | None = None
    # Days feedback keeps the rendered content of the app's messages; 0 = forever.
    content_retention_days: int = 0

    @classmethod
    def from_json(cls, raw: bytes) -> "AppIdentity":
        """Tolerates fields written by an older or newer intake."""
        data: dict[str, Any] = json.loads(raw or b"{}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def check_channel(self, channel: str) -> None:
        if self.allowed_channels and channel not in self.allowed_channels:
            raise PermissionDenied(f"app {self.app_id} may not send on channel '{channel}'")

    def check_category(self, category: int) -> None:
        if self.allowed_categories and category not in self.allowed_categories:
            raise PermissionDenied(f"app {self.app_id} may not send {categories.name(category)} messages")


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def bearer_token(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    raise Unauthenticated("missing credentials: send metadata 'authorization: Bearer <token>'")


class AppKeys:
    """The app-key registry in NATS KV, with a short local cache so a Send costs no extra round trip."""

    def __init__(self, kv: Bucket, bus: MessageBus) -> None:
        self._kv = kv
        self._bus = bus
        self._cache: dict[str, tuple[float, AppIdentity]] = {}
        # Raised by every change heard of: a lookup that was under way meanwhile may have read the old value, and
        # does not cache it.
        self._changes = 0
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, bus: MessageBus) -> "AppKeys":
        keys = cls(await bus.key_value(BUCKET), bus)
        ready = asyncio.Event()
        keys._listener = asyncio.create_task(keys._forget_changed(ready), name="app-key-changes")
        listening = asyncio.create_task(ready.wait())
        await asyncio.wait((keys._listener, listening), return_when=asyncio.FIRST_COMPLETED)
        if keys._listener.done():  # it could not subscribe: the binary fails to start, as on any outage at start
            listening.cancel()
            keys._listener.result()
        return keys

    async def publish(self, hashed_key: str, app: AppIdentity) -> None:
        await self._kv.put(hashed_key, json.dumps(asdict(app)).encode())
        await self._changed(hashed_key)

    async def revoke(self, hashed_key: str) -> None:
        await self._kv.delete(hashed_key)
        await self._changed(hashed_key)

    async def _changed(self, hashed_key: str) -> None:
        self._forget(hashed_key)
        await self._bus.announce(subjects.APP_KEYS_CHANGED, hashed_key.encode())

    def _forget(self, hashed_key: str) -> None:
        self._changes += 1
        self._cache.pop(hashed_key, None)

    async def _forget_changed(self, ready: asyncio.Event) -> None:
        async with self._bus.notices(subjects.APP_KEYS_CHANGED) as changed:
            ready.set()
            while True:
                self._forget((await changed.get()).decode())

    async def apps(self) -> dict[str, AppIdentity]:
        """Every app with a key in the registry, by app id."""
        try:
            hashes = await self._kv.keys()
        except NoKeysError:
            return {}
        found: dict[str, AppIdentity] = {}
        for hashed in hashes:
            if (app := await self._lookup(hashed)) is not None:
                found[app.app_id] = app
        return found

    async def authenticate(self, context: grpc.aio.ServicerContext) -> AppIdentity:
        return await self.check(key_hash(bearer_token(context)))

    async def check(self, hashed_key: str) -> AppIdentity:
        """The app of the key with this hash, if the key still works and the app is enabled."""
        app = await self._lookup(hashed_key)
        if app is None:
            raise Unauthenticated("unknown API key")
        if app.key_expires_at is not None and app.key_expires_at <= time.time():
            raise Unauthenticated("this API key was rotated out and has expired; use the app's new key")
        if app.disabled:
            raise PermissionDenied(f"app {app.app_id} is disabled")
        CALLING_APP.set(app.app_id)
        return app

    async def _lookup(self, hashed: str) -> AppIdentity | None:
        now = time.monotonic()
        cached = self._cache.get(hashed)
        if cached and cached[0] > now:
            return cached[1]
        changes = self._changes
        try:
            entry = await self._kv.get(hashed)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        app = AppIdentity.from_json(entry.value or b"")
        if changes == self._changes:
            self._cache[hashed] = (now + CACHE_SECONDS, app)
        return app
