"""Feedback as one stage in one process: its consumers (status_writer.py) on the in-memory bus, its tables in a
real database, and StatusService answering over gRPC on a local port, as callers read it. Only feedback's own
decisions run here; the mesh tests keep what needs processes (a restart, the other stages' events)."""

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from herald.v1 import events_pb2, status_service_pb2, status_service_pb2_grpc

from herald.internal.v1 import work_pb2
from herald.libs import grpc_server, subjects
from herald.libs.audit import AuditTrail
from herald.libs.auth import AppIdentity, AppKeys, key_hash, new_api_key
from herald.libs.callers import Gate
from herald.libs.grpc_server import TracedServer
from herald.libs.store import Database
from herald.services.feedback.erasure import Erasures
from herald.services.feedback.main import BATCH, LINGER
from herald.services.feedback.status_service import StatusService
from herald.services.feedback.status_writer import UNPROCESSED_CONSUMER, StatusWriter
from tests.helpers.memory_bus import MemoryBus
from tests.helpers.status_events import ACCEPTED_SUBJECT, EVENT_SUBJECT

# Generous: two cores shared with other tests.
WAIT = 15.0
ADMIN_TOKEN = secrets.token_urlsafe(16)
Metadata = tuple[tuple[str, str], ...]


@dataclass
class FeedbackStage:
    bus: MemoryBus
    db: Database
    keys: AppKeys
    writer: StatusWriter
    status: status_service_pb2_grpc.StatusServiceStub
    admin: Metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"),)

    async def app(self, **identity: Any) -> tuple[str, Metadata]:
        """A new app's id and the metadata its API key calls with, as intake registers it."""
        api_key, app_id = new_api_key(), f"app_{uuid.uuid4().hex[:12]}"
        await self.keys.publish(key_hash(api_key), AppIdentity(app_id=app_id, name=app_id, **identity))
        return app_id, (("authorization", f"Bearer {api_key}"),)

    async def start(self) -> None:
        """Feedback's consumers, wired as herald/services/feedback/main.py wires them."""
        writer = self.writer
        for stream, durable, subject, handler in (
            (subjects.MESSAGES_STREAM, "feedback-messages", subjects.EVERY_MESSAGE_ACCEPTED, writer.on_messages),
            (subjects.EVENTS_STREAM, "feedback-events", subjects.DELIVERY_EVENTS, writer.on_events),
        ):
            await self.bus.consume(stream, durable, subject, handler, batch=BATCH, linger=LINGER)
        await self.bus.consume(
            subjects.DEAD_LETTERS_STREAM,
            UNPROCESSED_CONSUMER,
            subjects.unprocessed("*"),
            writer.on_unprocessed,
            batch=BATCH,
        )

    async def publish(
        self, *messages: events_pb2.DeliveryEvent | work_pb2.AcceptedMessage | bytes, raw_to: str = EVENT_SUBJECT
    ) -> None:
        """In this order, each on its own and without a de-duplication id, as a redelivery or a misbehaving
        producer would; raw bytes go to `raw_to` (where status events go, or ACCEPTED_SUBJECT)."""
        for message in messages:
            if isinstance(message, bytes):
                await self.bus.publish(raw_to, message)
            elif isinstance(message, work_pb2.AcceptedMessage):
                await self.bus.publish(ACCEPTED_SUBJECT, work_pb2.AcceptedBatch(messages=[message]).SerializeToString())
            else:
                await self.bus.publish(EVENT_SUBJECT, events_pb2.DeliveryEvents(events=[message]).SerializeToString())

    async def wait_message(
        self, app: Metadata, message_id: str, done: Callable[[status_service_pb2.Message], bool]
    ) -> status_service_pb2.Message:
        """Poll GetMessage until `done` holds (status is recorded asynchronously)."""
        async with asyncio.timeout(WAIT):
            while True:
                try:
                    found: status_service_pb2.Message = await self.status.GetMessage(
                        status_service_pb2.GetMessageRequest(message_id=message_id), metadata=app
                    )
                    if done(found):
                        return found
                except grpc.aio.AioRpcError as e:
                    if e.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                await asyncio.sleep(0.02)


@asynccontextmanager
async def feedback_stage(database_url: str, *, started: bool = True) -> AsyncIterator[FeedbackStage]:
    """Feedback on `database_url`; with `started=False` its consumers wait for `start()`, so what a test
    publishes first waits in the streams, as while feedback is down."""
    db = await Database.open(database_url, "feedback")
    server = grpc.aio.server(options=grpc_server.SERVER_OPTIONS)
    try:
        async with MemoryBus() as bus:
            keys = await AppKeys.open(bus)
            erasures = Erasures(db)
            await erasures.refresh()
            status_service_pb2_grpc.add_StatusServiceServicer_to_server(
                StatusService(db, keys), TracedServer(server, Gate(ADMIN_TOKEN, None), AuditTrail(bus, "feedback"))
            )
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stage = FeedbackStage(
                    bus, db, keys, StatusWriter(db, erasures), status_service_pb2_grpc.StatusServiceStub(channel)
                )
                if started:
                    await stage.start()
                yield stage
    finally:
        await server.stop(None)
        await db.close()
