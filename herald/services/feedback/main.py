"""herald-feedback entry point."""

from herald.v1 import audit_service_pb2, audit_service_pb2_grpc, status_service_pb2, status_service_pb2_grpc

from herald.libs import runtime, subjects
from herald.libs.auth import AppKeys
from herald.libs.bus import each
from herald.libs.grpc_server import TracedServer
from herald.services.feedback import erasure
from herald.services.feedback.audit_log import AuditLog
from herald.services.feedback.audit_service import AuditService
from herald.services.feedback.erasure import Erasures
from herald.services.feedback.retention import Retention
from herald.services.feedback.settings import FeedbackSettings
from herald.services.feedback.status_service import StatusService
from herald.services.feedback.status_writer import UNPROCESSED_CONSUMER, StatusWriter

# Events per transaction: a batch costs a handful of bulk statements, so bigger batches are cheaper per event.
BATCH = 500
# How long feedback lets records gather after a small batch: a status shows that much later, and a delivery's
# PENDING and SENT more often meet in one batch, which stores the delivery once instead of storing and updating it.
# 0.1 s rather than 0.05 saved feedback about a twentieth of its CPU per delivery (docs/benchmarks.md).
LINGER = 0.1


async def setup(rt: runtime.Runtime, settings: FeedbackSettings, server: TracedServer) -> list[str]:
    keys = await AppKeys.open(rt.bus)
    status_service_pb2_grpc.add_StatusServiceServicer_to_server(StatusService(rt.db, keys), server)
    audit_service_pb2_grpc.add_AuditServiceServicer_to_server(AuditService(rt.db), server)
    erasures = Erasures(rt.db)
    await erasures.refresh()
    rt.every(erasure.REFRESH, erasures.refresh, "erasures")
    writer = StatusWriter(rt.db, erasures)
    for stream, durable, subject, handler in (
        (subjects.MESSAGES_STREAM, "feedback-messages", subjects.EVERY_MESSAGE_ACCEPTED, writer.on_messages),
        (subjects.EVENTS_STREAM, "feedback-events", subjects.DELIVERY_EVENTS, writer.on_events),
    ):
        await rt.bus.consume(stream, durable, subject, handler, batch=BATCH, linger=LINGER)
    await rt.bus.consume(
        subjects.DEAD_LETTERS_STREAM,
        UNPROCESSED_CONSUMER,
        subjects.unprocessed("*"),
        writer.on_unprocessed,
        batch=BATCH,
    )
    await rt.bus.consume(subjects.EVENTS_STREAM, "feedback-erasures", subjects.USER_ERASED, each(erasures.forget))
    audit_log = AuditLog(rt.db, settings.audit_retention_days)
    await rt.bus.consume(subjects.EVENTS_STREAM, "feedback-audit", subjects.AUDIT, audit_log.on_records, batch=BATCH)
    rt.every(settings.retention_check_seconds, Retention(rt.db, keys).purge, "retention")
    rt.every(settings.retention_check_seconds, audit_log.purge, "audit-retention")
    return [
        status_service_pb2.DESCRIPTOR.services_by_name["StatusService"].full_name,
        audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
    ]


def main() -> None:
    runtime.run("feedback", FeedbackSettings.from_env, setup)
