"""Apps and their keys: intake's tables are the record, the NATS KV registry is what every service checks.

Each write updates the table first and the registry second; start-up republishes
every key (`publish_all`), so a registry write lost to a crash is repaired.
"""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from herald.libs import pagination
from herald.libs.auth import AppIdentity, AppKeys, key_hash, new_api_key
from herald.libs.errors import NotFound
from herald.libs.ids import new_id
from herald.libs.store import Database
from herald.libs.timeutil import now
from herald.services.intake import tables


class AppRegistry:
    def __init__(self, db: Database, keys: AppKeys) -> None:
        self._db = db
        self._keys = keys

    async def create(
        self,
        name: str,
        channels: list[str],
        categories: list[int],
        rate: float,
        quiet: dict[str, Any] | None,
        retention_days: int,
    ) -> tuple[tables.App, str]:
        app = tables.App(
            quiet_hours=quiet,
            content_retention_days=retention_days,
            app_id=new_id("app"),
            name=name,
            allowed_channels=channels,
            allowed_categories=categories,
            rate_limit_per_second=rate,
            disabled=False,
            create_time=now(),
        )
        api_key = new_api_key()
        key = tables.AppKey(key_hash=key_hash(api_key), app_id=app.app_id, create_time=now(), expire_time=None)
        async with self._db.session.begin() as session:
            session.add_all([app, key])
        await self._keys.publish(key.key_hash, identity(app, key))
        return app, api_key

    async def get(self, app_id: str) -> tables.App:
        async with self._db.session() as session:
            app = await session.get(tables.App, app_id)
        if app is None:
            raise NotFound(f"app '{app_id[:64]}' not found")
        return app

    async def list(self, size: int, token: str) -> tuple[list[tables.App], str]:
        size = pagination.page_size(size)
        after = pagination.decode(token, lambda key: key.startswith("app_"))
        async with self._db.session() as session:
            rows = list(
                await session.scalars(
                    select(tables.App).where(tables.App.app_id > after).order_by(tables.App.app_id).limit(size + 1)
                )
            )
        more = len(rows) > size
        rows = rows[:size]
        return rows, pagination.encode(rows[-1].app_id) if more else ""

    async def set_disabled(self, app_id: str, disabled: bool) -> tables.App:
        return await self._change(app_id, disabled=disabled)

    async def set_retention(self, app_id: str, days: int) -> tables.App:
        return await self._change(app_id, content_retention_days=days)

    async def _change(self, app_id: str, **values: Any) -> tables.App:
        """Set columns of the app and tell every service (its keys' registry entries carry them)."""
        async with self._db.session.begin() as session:
            app = await session.get(tables.App, app_id, with_for_update=True)
            if app is None:
                raise NotFound(f"app '{app_id[:64]}' not found")
            for column, value in values.items():
                setattr(app, column, value)
        await self._publish_keys(app)
        return app

    async def rotate(self, app_id: str, grace: timedelta) -> tuple[str, datetime]:
        """A new key; the app's current keys expire after `grace` (those already expiring sooner keep their time)."""
        expire = now() + grace
        api_key = new_api_key()
        async with self._db.session.begin() as session:
            app = await session.get(tables.App, app_id, with_for_update=True)
            if app is None:
                raise NotFound(f"app '{app_id[:64]}' not found")
            for key in await session.scalars(select(tables.AppKey).where(tables.AppKey.app_id == app_id)):
                if key.expire_time is None or key.expire_time > expire:
                    key.expire_time = expire
            session.add(tables.AppKey(key_hash=key_hash(api_key), app_id=app_id, create_time=now(), expire_time=None))
        await self._publish_keys(app)
        return api_key, expire

    async def publish_all(self) -> None:
        async with self._db.session() as session:
            apps = {a.app_id: a for a in await session.scalars(select(tables.App))}
            keys = list(await session.scalars(select(tables.AppKey)))
        for key in keys:
            await self._publish(apps[key.app_id], key)

    async def _publish_keys(self, app: tables.App) -> None:
        async with self._db.session() as session:
            keys = list(await session.scalars(select(tables.AppKey).where(tables.AppKey.app_id == app.app_id)))
        for key in keys:
            await self._publish(app, key)

    async def _publish(self, app: tables.App, key: tables.AppKey) -> None:
        if key.expire_time is not None and key.expire_time <= now():
            await self._keys.revoke(key.key_hash)
        else:
            await self._keys.publish(key.key_hash, identity(app, key))


def identity(app: tables.App, key: tables.AppKey) -> AppIdentity:
    return AppIdentity(
        app_id=app.app_id,
        name=app.name,
        allowed_channels=list(app.allowed_channels),
        allowed_categories=list(app.allowed_categories),
        rate_limit_per_second=app.rate_limit_per_second,
        disabled=app.disabled,
        key_expires_at=key.expire_time.timestamp() if key.expire_time else None,
        quiet_hours=app.quiet_hours,
        content_retention_days=app.content_retention_days,
    )
