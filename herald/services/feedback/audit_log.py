"""feedback keeps the audit trail: every AuditEvent on herald.event.audit becomes a row of feedback_audit_events
(herald/libs/audit.py writes them, on every binary). Idempotent under redelivery (the event id is the key), and
kept HERALD_AUDIT_RETENTION_DAYS, apart from any app's content retention.

The records of successful Sends and SendBatches are written here from the accepted messages themselves
(`traffic_rows`, in the transaction that records them): intake publishes none for them, so a Send costs intake
no record (issue 30), and none is lost, as the message is durable before its call answers. A Send's record is its
message's; a SendBatch's is one per call, category and publish (a call's messages of one category travel together,
at most MAX_GROUP_RECORDS a publish).
"""

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import structlog
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from herald.v1 import events_pb2, message_service_pb2
from sqlalchemy import select

from herald.internal.v1 import work_pb2
from herald.libs import audit
from herald.libs.bus import Incoming
from herald.libs.bus.handlers import ACK, Broken, Outcome
from herald.libs.roles import RULES
from herald.libs.store import Database
from herald.libs.telemetry import trace_id
from herald.libs.timeutil import from_timestamp, now
from herald.services.feedback import tables

log = structlog.get_logger()

A = tables.AuditRecord
RECORDS = tables.Base.metadata.tables[A.__tablename__]
_PER_MESSAGE = "{message_id}"


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
        rows: list[dict[str, Any]] = []
        for incoming in batch:
            try:
                events = events_pb2.AuditEvents.FromString(incoming.data).events
            except DecodeError as e:
                outcomes.append(Broken.of(e))
                continue
            outcomes.append(ACK)
            rows += [row(event) for event in events]
        async with self._db.session.begin() as session:  # a failure: the bus retries, one message at a time
            await self._db.insert_rows(session, RECORDS, rows, key=["event_id"])
        return outcomes

    async def purge(self) -> int:
        purged = await self._db.purge(select(A.event_id).where(A.occur_time < now() - self._retention), A.event_id)
        if purged:
            log.info("deleted audit records past their retention", records=purged)
        return purged


def row(event: events_pb2.AuditEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "occur_time": from_timestamp(event.occur_time) or now(),
        "actor": _column(event.actor, 200),
        "action": _column(event.action, 200),
        "target": _column(event.target, 400),
        "record": json_format.MessageToJson(event, indent=None),
    }


def traffic_rows(messages: Iterable[work_pb2.AcceptedMessage]) -> list[dict[str, Any]]:
    """The audit records of the calls that accepted these messages (those with `accepted_by`)."""
    calls: dict[tuple[str, str, str], list[work_pb2.AcceptedMessage]] = defaultdict(list)
    for message in messages:
        if message.accepted_by in RULES:
            # A call whose record names its message (a unary Send) is one message; a SendBatch's messages of one
            # publish are one call.
            one = message.message_id if _PER_MESSAGE in RULES[message.accepted_by].target else ""
            calls[(message.accepted_by, message.app_id, one)].append(message)
    return [row(_record(action, app_id, found)) for (action, app_id, _), found in calls.items()]


def _record(action: str, app_id: str, messages: list[work_pb2.AcceptedMessage]) -> events_pb2.AuditEvent:
    ids = sorted(m.message_id for m in messages)
    first = messages[0]
    event = events_pb2.AuditEvent(
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{action}/{' '.join(ids)}")),
        occur_time=first.create_time,
        actor=f"app:{app_id}",
        action=action,
        target=audit.target(RULES[action], None, message_service_pb2.SendResponse(message_id=ids[0]), app_id),
        outcome="OK",
        service="intake",
        trace_id=trace_id(first.traceparent),
    )
    event.after.update({"message_ids": ids})
    return event
