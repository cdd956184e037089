"""feedback keeps the audit trail: every AuditEvent on herald.event.audit becomes a row of feedback_audit_events
(herald/libs/audit.py writes them, on every binary). Idempotent under redelivery (the event id is the key), and
kept HERALD_AUDIT_RETENTION_DAYS, apart from any app's content retention."""

from datetime import timedelta

import structlog
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from herald.v1 import events_pb2
from sqlalchemy import select

from herald.libs.bus import Incoming
from herald.libs.bus.handlers import ACK, Broken, Outcome
from herald.libs.store import Database
from herald.libs.timeutil import from_timestamp, now
from herald.services.feedback import tables

log = structlog.get_logger()

A = tables.AuditRecord
RECORDS = tables.Base.metadata.tables[A.__tablename__]


def _column(text: str, most: int) -> str:
    """What a filter column can hold: a refused request's target may carry what no column takes (a NUL, a
    thousand characters); the record itself keeps it, as JSON."""
    return text.replace("\x00", "")[:most]


class AuditLog:
    def __init__(self, db: Database, retention_days: int) -> None:
        self._db = db
        self._retention = timedelta(days=retention_days)

    async def on_records(self, batch: list[Incoming]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        rows = []
        for incoming in batch:
            try:
                events = events_pb2.AuditEvents.FromString(incoming.data).events
            except DecodeError as e:
                outcomes.append(Broken.of(e))
                continue
            outcomes.append(ACK)
            rows += [
                {
                    "event_id": event.event_id,
                    "occur_time": from_timestamp(event.occur_time) or now(),
                    "actor": _column(event.actor, 200),
                    "action": _column(event.action, 200),
                    "target": _column(event.target, 400),
                    "record": json_format.MessageToJson(event, indent=None),
                }
                for event in events
            ]
        async with self._db.session.begin() as session:  # a failure: the bus retries, one message at a time
            await self._db.insert_rows(session, RECORDS, rows, key=["event_id"])
        return outcomes

    async def purge(self) -> int:
        purged = await self._db.purge(select(A.event_id).where(A.occur_time < now() - self._retention), A.event_id)
        if purged:
            log.info("deleted audit records past their retention", records=purged)
        return purged
