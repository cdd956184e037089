"""The router as one stage in one process: its consumers on the in-memory bus, its tables in the test's database
(SQLite, and PostgreSQL when the tests have one), and what it publishes - delivery events and delivery jobs -
collected for a test to read. Only the router's decisions run here; the mesh tests keep what needs processes (the
NATS schedules' timing, restarts, the adapters)."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf import json_format
from herald.v1 import admin_service_pb2, common_pb2, events_pb2
from herald.v1 import message_service_pb2 as msg

from herald.internal.v1 import work_pb2
from herald.libs import categories, delivery_jobs, subjects
from herald.libs.bus import Incoming, each
from herald.libs.dispatch import DispatchLedger
from herald.libs.store import Database
from herald.services.router import tables
from herald.services.router.consent import ConsentRecorder
from herald.services.router.consumers import Router
from herald.services.router.dedup import ContentDedup
from herald.services.router.frequency import FrequencyCaps
from herald.services.router.suppression_list import SuppressionList
from tests.helpers.memory_bus import MemoryBus

# Generous: two cores shared with other tests.
WAIT = 10.0
SOFT_BOUNCE_LIMIT = 3
T = TypeVar("T")


@dataclass
class RouterStage:
    bus: MemoryBus
    db: Database
    caps: FrequencyCaps
    ledger: DispatchLedger
    suppressions: SuppressionList
    events: list[events_pb2.DeliveryEvent] = field(default_factory=list)
    jobs: list[work_pb2.DeliveryJob] = field(default_factory=list)

    async def user(
        self,
        addresses: dict[str, str] | None = None,
        quiet: common_pb2.QuietHours | None = None,
        preferred: str = "",
        timezone: str = "",
    ) -> str:
        """A directory entry, as DirectoryService.UpsertUser writes it (quiet hours apply only with a timezone)."""
        user_id = f"u-{uuid.uuid4().hex[:8]}"
        async with self.db.session.begin() as session:
            session.add(
                tables.User(
                    user_id=user_id,
                    addresses=addresses or {},
                    timezone=timezone,
                    locale="",
                    update_time=datetime.now(UTC),
                    quiet_hours=json_format.MessageToDict(quiet) if quiet is not None else None,
                    dead_addresses=None,
                    preferred_channel=preferred,
                )
            )
        return user_id

    async def opt_out(self, user_id: str, category: int, channel: str = "") -> None:
        async with self.db.session.begin() as session:
            session.add(
                tables.Preference(
                    user_id=user_id, category=category, channel=channel, opted_out=True, update_time=datetime.now(UTC)
                )
            )

    async def cap(
        self, max_deliveries: int, window_seconds: float, category: int, channel: str = "", app_id: str = ""
    ) -> str:
        """A frequency rule, as RoutingService.CreateFrequencyRule writes it; its id."""
        rule_id = f"freq_{uuid.uuid4().hex[:12]}"
        async with self.db.session.begin() as session:
            session.add(
                tables.FrequencyRule(
                    rule_id=rule_id,
                    category=category,
                    channel=channel,
                    app_id=app_id,
                    max_deliveries=max_deliveries,
                    window_seconds=window_seconds,
                    create_time=datetime.now(UTC),
                )
            )
        self.caps.forget_rules()
        return rule_id

    async def send(self, message: work_pb2.AcceptedMessage) -> str:
        """Publish an accepted message as intake does; its id."""
        message.message_id = message.message_id or f"msg_{uuid.uuid4().hex[:16]}"
        await self.bus.publish_grouped(
            subjects.message_accepted(message.template.category),
            (message.SerializeToString(), message.message_id),
            each_traced=True,
        )
        return message.message_id

    async def settled(self, message_id: str, count: int = 1) -> list[events_pb2.DeliveryEvent]:
        """The message's delivery events once `count` of its deliveries have one, in the order published."""
        mine = await self.wait_for(lambda: [e for e in self.events if e.message_id == message_id], count)
        return mine

    async def queued(self, message_id: str, count: int = 1) -> list[work_pb2.DeliveryJob]:
        """The delivery jobs queued for the message's deliveries (for the adapters), once there are `count`."""
        return await self.wait_for(lambda: [j for j in self.jobs if j.message_id == message_id], count)

    async def wait_for(self, found: Callable[[], list[T]], count: int) -> list[T]:
        deadline = time.monotonic() + WAIT
        while len(now := found()) < count:
            assert time.monotonic() < deadline, f"{len(now)} of {count} after {WAIT}s: {now}"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # anything more that was coming
        return found()


@asynccontextmanager
async def router_stage(database_url: str, dedup_window: float = 0.0) -> AsyncIterator[RouterStage]:
    """The router's consumers on `database_url` (the tests' `database_url` fixture: each backend), wired as
    herald/services/router/main.py wires them."""
    db = await Database.open(database_url, "router")
    async with MemoryBus() as bus:
        caps = await FrequencyCaps.open(db, bus)
        dedup = await ContentDedup.open(bus, dedup_window)
        ledger = await DispatchLedger.open(bus)
        suppressions = SuppressionList(db, bus)
        router = Router(db, bus, ledger, suppressions, dedup, caps)
        stage = RouterStage(bus, db, caps, ledger, suppressions)
        for category in categories.PIPELINES:
            for stream, durable, subject, handler in router.subscriptions(category):
                await bus.consume(stream, durable, subject, each(handler))
        await bus.consume(
            subjects.MESSAGES_STREAM, "router-cancel", subjects.MESSAGE_CANCELLED, each(router.on_cancelled)
        )
        consent = ConsentRecorder(db, bus, suppressions, SOFT_BOUNCE_LIMIT, window_days=7)
        await bus.consume(subjects.MESSAGES_STREAM, "router-consent", subjects.CONSENT, each(consent.handle))

        async def event(incoming: Incoming) -> None:
            stage.events.extend(events_pb2.DeliveryEvents.FromString(incoming.data).events)

        async def job(incoming: Incoming) -> None:
            stage.jobs.extend(delivery_jobs.read(incoming.data, incoming.headers))

        await bus.consume(subjects.EVENTS_STREAM, "test-events", subjects.DELIVERY_EVENTS, each(event))
        await bus.consume(subjects.DELIVERIES_STREAM, "test-jobs", "herald.delivery.>", each(job))
        try:
            yield stage
        finally:
            await db.close()


def message(
    bodies: dict[str, str],
    *recipients: msg.Recipient,
    category: int = common_pb2.CATEGORY_NOTIFICATION,
    fallback: list[str] | None = None,
    channels: list[str] | None = None,
    named: bool = False,
) -> work_pb2.AcceptedMessage:
    """An accepted message as intake makes it (acceptance.py): the template pinned, the channels chosen."""
    template = admin_service_pb2.Template(
        template_id=f"t-{uuid.uuid4().hex[:8]}",
        version=1,
        category=common_pb2.Category.ValueType(category),
        contents=[common_pb2.ChannelContent(channel=c, body=b) for c, b in bodies.items()],
        fallback_channels=fallback or [],
    )
    accepted = work_pb2.AcceptedMessage(
        app_id="app_1",
        template=template,
        recipients=recipients,
        channels=channels or list(bodies),
        channels_named=named,
    )
    accepted.create_time.GetCurrentTime()
    return accepted
