"""Retention: an app's status records are deleted once older than the app's content_retention_days (set through
AdminService, read from the app registry) - the message, its deliveries with their rendered content and
addresses' owners, and their history. The hourly statistics stay (counts and costs, nobody's data), so finance's
"how many" outlives support's "what happened".

Every feedback replica runs the purge; it is idempotent (Database.purge), so two at once only repeat each other.
"""

from datetime import datetime, timedelta

import structlog
from sqlalchemy import exists, select

from herald.libs.auth import AppKeys
from herald.libs.store import Database
from herald.libs.timeutil import now
from herald.services.feedback import tables

log = structlog.get_logger()

D, E, M = tables.Delivery, tables.Event, tables.Message


class Retention:
    def __init__(self, db: Database, keys: AppKeys) -> None:
        self._db = db
        self._keys = keys

    async def purge(self) -> int:
        """Delete the expired records of every app with a retention; returns how many deliveries went."""
        purged = 0
        for app in (await self._keys.apps()).values():
            if app.content_retention_days > 0:
                purged += await self._purge_app(app.app_id, now() - timedelta(days=app.content_retention_days))
        if purged:
            log.info("deleted status records past their app's retention", deliveries=purged)
        return purged

    async def _purge_app(self, app_id: str, cutoff: datetime) -> int:
        deliveries = select(D.delivery_id).where(D.app_id == app_id, D.create_time < cutoff)
        purged = await self._db.purge(deliveries, E.delivery_id, D.delivery_id)
        # A message goes once it has no delivery left (one cancelled before routing never had any).
        messages = select(M.message_id).where(
            M.app_id == app_id, M.create_time < cutoff, ~exists().where(D.message_id == M.message_id)
        )
        await self._db.purge(messages, tables.MessageState.message_id, M.message_id)
        return purged
