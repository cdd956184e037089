"""Shutdown never outlives the pod's grace period because one connection will not close."""

import asyncio
import time

from structlog.testing import capture_logs

from herald.libs import runtime


async def test_a_shutdown_step_that_hangs_is_abandoned_and_named() -> None:
    started = time.monotonic()
    with capture_logs() as logs:
        await runtime._bounded("NATS connection", asyncio.Event().wait())
    took = time.monotonic() - started
    assert runtime.CLOSE_BOUND <= took < runtime.CLOSE_BOUND + 5
    assert [entry["step"] for entry in logs if entry["log_level"] == "error"] == ["NATS connection"]


async def test_a_step_that_finishes_is_waited_for_quietly() -> None:
    with capture_logs() as logs:
        await runtime._bounded("database pool", asyncio.sleep(0.1))
    assert logs == []
