"""The deliverer as one stage in one process: its consumers on the in-memory bus, its tables in a real database,
real provider plug-ins calling the tests' fakes over HTTP, and what it publishes - status events, dead letters and
fallbacks - collected for a test to read. Only the adapters' decisions run here; the mesh tests
keep what needs processes (SIGKILL during calls, restarts, replays through DeadLetterService end to end)."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from herald.v1 import common_pb2, events_pb2

from herald.internal.v1 import work_pb2
from herald.libs import channels, delivery_jobs, subjects
from herald.libs.bus import Incoming, each
from herald.libs.rate_limit import RateLimiter
from herald.libs.store import Database
from herald.services.adapters.accounts import Accounts, plugins
from herald.services.adapters.attempt import FINAL
from herald.services.adapters.consent import ConsentReporter
from herald.services.adapters.deliverer import Deliverer
from herald.services.adapters.main import consume_jobs
from herald.services.adapters.settings import AdaptersSettings
from herald.services.adapters.tracking import Tracker
from herald.services.adapters.unsubscribe import Unsubscriber
from tests.conftest import RETRY_BACKOFF, WEBHOOK_SECRET
from tests.helpers.memory_bus import MemoryBus

# Generous: two cores shared with other tests.
WAIT = 20.0
T = TypeVar("T")


@dataclass
class AdaptersStage:
    bus: MemoryBus
    db: Database
    events: list[events_pb2.DeliveryEvent] = field(default_factory=list)
    dead_letters: list[work_pb2.DeadLetterRecord] = field(default_factory=list)
    fallbacks: list[work_pb2.DeliveryJob] = field(default_factory=list)

    async def send(self, channel: str, address: str, **fields: Any) -> str:
        """Queue a delivery job as the router does (settling.py); its delivery id."""
        job = job_for(channel, address, **fields)
        await delivery_jobs.queue(self.bus, job)
        return job.delivery_id

    async def outcome(self, delivery_id: str) -> list[events_pb2.DeliveryEvent]:
        """The delivery's status events, in the order published, once one of them is final."""

        def mine() -> list[events_pb2.DeliveryEvent]:
            found = [e for e in self.events if e.delivery_id == delivery_id]
            return found if any(e.state in FINAL for e in found) else []

        return await self._wait(mine)

    async def _wait(self, found: Callable[[], list[T]]) -> list[T]:
        deadline = time.monotonic() + WAIT
        while not found():
            assert time.monotonic() < deadline, f"nothing after {WAIT}s"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # anything more that was coming
        return found()


def job_for(channel: str, address: str, **fields: Any) -> work_pb2.DeliveryJob:
    """A delivery job of a new message to one recipient, as the router makes one (settling.py)."""
    job = work_pb2.DeliveryJob(
        delivery_id=f"msg_{uuid.uuid4().hex[:16]}.0",
        app_id="app_1",
        template_id="t",
        channel=channel,
        address=address,
        body="{}",
        **{"category": common_pb2.CATEGORY_NOTIFICATION} | fields,
    )
    job.message_id = job.delivery_id.split(".")[0]
    return job


@asynccontextmanager
async def adapters_stage(database_url: str, **env: str) -> AsyncIterator[AdaptersStage]:
    """The deliverer's consumers, wired as herald/services/adapters/main.py wires them, with the mesh's settings
    (tests/conftest.py: the tests' webhook secret, 127.0.0.1 allowed, retries in seconds) and `env` over them."""
    settings = AdaptersSettings.from_env(
        {
            "HERALD_WEBHOOK_SIGNING_SECRET": WEBHOOK_SECRET,
            "HERALD_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            **RETRY_BACKOFF,
            **env,
        }
    )
    db = await Database.open(database_url, "adapters")
    try:
        async with MemoryBus() as bus, aiohttp.ClientSession() as http:
            accounts = Accounts(db, bus, http, settings, plugins())
            await accounts.reload()
            tracker = Tracker(db, bus, "", "", settings.tracking_ttl_days)
            limiter = await RateLimiter.open(bus)
            unsubscriber = Unsubscriber(ConsentReporter(bus), "", "")
            deliverer = Deliverer(db, bus, accounts, settings.retry_backoff, limiter, tracker, unsubscriber)
            stage = AdaptersStage(bus, db)
            # The inbox writer is a stage of its own.
            handlers = {c: deliverer.handle for c in channels.KNOWN if c != "inbox"}
            await consume_jobs(bus, settings.pipelines, handlers)

            async def event(incoming: Incoming) -> None:
                stage.events.extend(events_pb2.DeliveryEvents.FromString(incoming.data).events)

            async def dead(incoming: Incoming) -> None:
                stage.dead_letters.append(work_pb2.DeadLetterRecord.FromString(incoming.data))

            async def fallback(incoming: Incoming) -> None:
                stage.fallbacks.append(work_pb2.DeliveryJob.FromString(incoming.data))

            await bus.consume(subjects.EVENTS_STREAM, "test-events", subjects.DELIVERY_EVENTS, each(event))
            await bus.consume(subjects.DEAD_LETTERS_STREAM, "test-dead", subjects.dead_letter(0, ""), each(dead))
            await bus.consume(subjects.MESSAGES_STREAM, "test-fallbacks", "herald.message.fallback.*", each(fallback))
            try:
                yield stage
            finally:
                await accounts.close()
    finally:
        await db.close()
