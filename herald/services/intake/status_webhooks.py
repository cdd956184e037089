"""Apps' status webhooks: intake's table is the record, the NATS KV bucket (herald/libs/status_webhooks.py) what
the adapters post by. As for app keys, each write updates the table first and the bucket second, and start-up
republishes every webhook, so a bucket write lost to a crash is repaired."""

import base64
import secrets
import time
from datetime import datetime, timedelta

from nats.js.errors import KeyNotFoundError, NoKeysError
from sqlalchemy import select

from herald.libs import ssrf
from herald.libs.bus import Bucket, MessageBus
from herald.libs.errors import InvalidArgument, NotFound
from herald.libs.status_webhooks import BUCKET, Secret, StatusWebhookConfig
from herald.libs.store import Database
from herald.libs.timeutil import now
from herald.services.intake import tables
from herald.services.intake.apps import AppRegistry

# How Standard Webhooks writes a secret: this prefix, then the key in base64.
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_BYTES = 24


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


class StatusWebhooks:
    def __init__(self, db: Database, kv: Bucket, apps: AppRegistry, allowed_hosts: frozenset[str]) -> None:
        self._db = db
        self._kv = kv
        self._apps = apps
        self._allowed_hosts = allowed_hosts

    @classmethod
    async def open(
        cls, db: Database, bus: MessageBus, apps: AppRegistry, allowed_hosts: frozenset[str]
    ) -> "StatusWebhooks":
        webhooks = cls(db, await bus.key_value(BUCKET), apps, allowed_hosts)
        await webhooks.publish_all()
        return webhooks

    async def set(self, app_id: str, url: str, states: list[int]) -> tuple[tables.StatusWebhook, str]:
        """Create or replace the app's webhook; the secret when this created it, else ""."""
        try:
            ssrf.check(url, self._allowed_hosts)
        except ssrf.BlockedDestination as e:
            raise InvalidArgument({"webhook.url": str(e)}) from None
        await self._apps.get(app_id)
        secret = ""
        async with self._db.session.begin() as session:
            row = await session.get(tables.StatusWebhook, app_id, with_for_update=True)
            if row is None:
                secret = new_secret()
                row = tables.StatusWebhook(app_id=app_id, secrets=[[secret, 0.0]])
                session.add(row)
            row.url, row.states, row.update_time = url, sorted(set(states)), now()
        await self._publish(row)
        return row, secret

    async def get(self, app_id: str) -> tables.StatusWebhook:
        async with self._db.session() as session:
            return _found(await session.get(tables.StatusWebhook, app_id), app_id)

    async def delete(self, app_id: str) -> None:
        async with self._db.session.begin() as session:
            await session.delete(_found(await session.get(tables.StatusWebhook, app_id, with_for_update=True), app_id))
        await self._kv.delete(app_id)

    async def rotate(self, app_id: str, grace: timedelta) -> tuple[str, datetime]:
        """A new secret; the current ones stop signing after `grace` (those already expiring sooner keep their
        time, those expired are dropped)."""
        expire = now() + grace
        until, clock = expire.timestamp(), time.time()
        secret = new_secret()
        async with self._db.session.begin() as session:
            row = _found(await session.get(tables.StatusWebhook, app_id, with_for_update=True), app_id)
            kept = [[value, min(e, until) if e else until] for value, e in row.secrets]
            row.secrets = [[secret, 0.0], *[s for s in kept if s[1] > clock]]
            row.update_time = now()
        await self._publish(row)
        return secret, expire

    async def publish_all(self) -> None:
        async with self._db.session() as session:
            rows = list(await session.scalars(select(tables.StatusWebhook)))
        for row in rows:
            await self._publish(row)
        try:
            published = await self._kv.keys()
        except NoKeysError:
            return
        for gone in set(published) - {row.app_id for row in rows}:
            try:
                await self._kv.delete(gone)
            except KeyNotFoundError:
                continue

    async def _publish(self, row: tables.StatusWebhook) -> None:
        config = StatusWebhookConfig(row.url, frozenset(row.states), tuple(Secret(v, e) for v, e in row.secrets))
        await self._kv.put(row.app_id, config.encode())


def _found(row: tables.StatusWebhook | None, app_id: str) -> tables.StatusWebhook:
    if row is None:
        raise NotFound(f"app '{app_id[:64]}' has no status webhook")
    return row
