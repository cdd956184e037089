"""Load shedding: while too much marketing work waits behind the marketing pipeline, intake refuses new marketing
messages with RESOURCE_EXHAUSTED and a RetryInfo, and critical and notification messages flow as always.

The backlog is read from JetStream once a second (never per call): the marketing publishes the router has not
taken yet (durables `router-marketing` and `router-marketing-parts`: a Send is one, a SendBatch's marketing
entries are one, an audience's or a topic's part is one) plus the marketing
delivery jobs the adapters have not taken yet (`adapters-marketing-<channel>`, one per delivery). The refusal says
when to come back: the time the backlog, draining at the rate seen since the last reading, takes to fall under
the limit (within MIN_RETRY..MAX_RETRY seconds).
"""

import asyncio
import contextlib
import time

import structlog
from herald.v1 import common_pb2
from nats.js import JetStreamContext

from herald.libs import subjects
from herald.libs.errors import TRANSIENT, ResourceExhausted

log = structlog.get_logger()

PERIOD = 1.0
MIN_RETRY = 1.0
MAX_RETRY = 300.0
# When the backlog is not draining at all, come back after this long.
STALLED_RETRY = 60.0


class Shed(ResourceExhausted):
    """Refused to keep the marketing backlog within its bound: herald's state, not the caller's rate."""

    cause = "load_shed"


class MarketingShedder:
    def __init__(self, js: JetStreamContext, limit: int) -> None:
        self._js = js
        self._limit = limit
        self.backlog = 0
        self._draining = 0.0  # items a second, as last seen
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._limit:
            self._task = asyncio.create_task(self._watch(), name="marketing-shedder")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def check(self, category: int) -> None:
        """Raise Shed for a marketing message while the backlog is over the limit."""
        if category != common_pb2.CATEGORY_MARKETING or not self._limit or self.backlog <= self._limit:
            return
        excess = self.backlog - self._limit
        retry = excess / self._draining if self._draining > 0 else STALLED_RETRY
        retry = min(MAX_RETRY, max(MIN_RETRY, retry))
        raise Shed(
            f"herald has {self.backlog:,} marketing messages and deliveries waiting (more than {self._limit:,}): "
            f"marketing is refused until it catches up; retry in {retry:.0f}s. Critical and notification messages "
            "are accepted",
            retry,
        )

    async def _watch(self) -> None:
        seen_at, seen = time.monotonic(), None
        while True:
            try:
                backlog = await self._read()
            except TRANSIENT as e:  # the broker is away: keep the last reading; Sends fail on their own then
                log.warning("could not read the marketing backlog", error=repr(e))
            else:
                clock = time.monotonic()
                if seen is not None:
                    self._draining = max(0.0, (seen - backlog) / max(clock - seen_at, 1e-3))
                seen_at, seen, self.backlog = clock, backlog, backlog
            await asyncio.sleep(PERIOD)

    async def _read(self) -> int:
        router = await self._js.consumers_info(subjects.MESSAGES_STREAM)
        adapters = await self._js.consumers_info(subjects.DELIVERIES_STREAM)
        waiting = [c for c in router if c.name in ("router-marketing", "router-marketing-parts")]
        waiting += [c for c in adapters if (c.name or "").startswith("adapters-marketing-")]
        return sum(c.num_pending or 0 for c in waiting)
