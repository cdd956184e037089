"""SREs alert on feedback falling behind: its /metrics shows the backlog of its events consumer while the process
is held up, and the backlog clears (with every event's status delay observed) once it runs again."""

import asyncio
import os
import signal
import uuid
from datetime import UTC, datetime
from typing import Any

from herald.v1 import common_pb2

from devmesh.mesh import Mesh
from tests.helpers.client import Herald
from tests.helpers.metrics import Samples, scrape, total
from tests.helpers.status_events import publish, status_event

EVENTS = 2000


def _pending(metrics: Samples) -> float:
    return total(metrics, "herald_consumer_pending_messages", consumer="feedback-events")


def _observed(metrics: Samples) -> float:
    return total(metrics, "herald_feedback_status_delay_seconds_count")


async def test_feedback_backlog_shows_in_its_metrics_and_clears(shared_mesh: tuple[Mesh, Herald]) -> None:
    mesh, _ = shared_mesh
    url = mesh.metrics_url("feedback")
    async with asyncio.timeout(30):  # what earlier tests published is folded in first
        while _pending(before := await scrape(url)) > 0:
            await asyncio.sleep(0.2)
    prefix = uuid.uuid4().hex[:12]
    at = datetime(2023, 5, 1, tzinfo=UTC)
    fields: dict[str, Any] = {"message_id": f"msg_{prefix}", "app_id": "app_lag", "channel": "webhook"}
    events = [status_event(f"{prefix}.{n}", common_pb2.DELIVERY_STATE_SENT, at, **fields) for n in range(EVENTS)]
    process = mesh.binaries["feedback"].proc
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        await publish(mesh, *events)
    finally:
        os.kill(process.pid, signal.SIGCONT)
    # At most one fetched batch (500) reached the process before it stopped; the rest waits in the stream.
    assert _pending(await scrape(url)) >= EVENTS / 2
    async with asyncio.timeout(30):
        while _pending(after := await scrape(url)) > 0 or _observed(after) < _observed(before) + EVENTS:
            await asyncio.sleep(0.2)
