"""Retention: the rendered content of an app's deliveries is blanked once older than the app's
content_retention_days (set through AdminService, read from the app registry). The deliveries, their history and
the statistics stay, so "what happened" and "how many" are still answered; only "what did it say" is gone.

Every feedback replica runs the purge; it is idempotent, so two at once only repeat each other's no-op. It works
a slice at a time, so a first purge over millions of rows never holds one huge transaction.
"""

import asyncio
from datetime import timedelta
from typing import Any, cast

import structlog
from sqlalchemy import CursorResult, select, update

from libs.auth import AppKeys
from libs.store import Database
from libs.timeutil import now
from services.feedback import tables

log = structlog.get_logger()

SLICE = 1000
D = tables.Delivery


class Retention:
    def __init__(self, db: Database, keys: AppKeys, every: float) -> None:
        self._db = db
        self._keys = keys
        self._every = every

    async def run_forever(self) -> None:
        while True:
            try:
                await self.purge()
            except Exception:  # the database or NATS is briefly away: try again next round
                log.exception("content purge failed")
            await asyncio.sleep(self._every)

    async def purge(self) -> int:
        """Blank the expired content of every app with a retention; returns how many deliveries it blanked."""
        purged = 0
        for app in (await self._keys.apps()).values():
            if app.content_retention_days > 0:
                purged += await self._purge_app(app.app_id, timedelta(days=app.content_retention_days))
        if purged:
            log.info("purged message content past its retention", deliveries=purged)
        return purged

    async def _purge_app(self, app_id: str, keep: timedelta) -> int:
        expired = (
            select(D.delivery_id)
            .where(D.app_id == app_id, D.create_time < now() - keep, D.content != "")
            .limit(SLICE)
            .scalar_subquery()
        )
        purged = 0
        while True:
            async with self._db.session.begin() as session:
                blank = update(D).where(D.delivery_id.in_(expired)).values(content="")
                result = await session.execute(blank.execution_options(synchronize_session=False))
            count = cast(CursorResult[Any], result).rowcount
            purged += count
            if count < SLICE:
                return purged
