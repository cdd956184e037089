"""The shared rate limiter: replicas that each hold their own limiter still share one limit, because its state is
one compare-and-set value per key in NATS KV (a real nats-server here)."""

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devmesh.mesh import NatsServer
from herald.libs.bus import Bus
from herald.libs.rate_limit import RateLimiter

RATE = 10.0  # per second, in bursts of up to 10
# Seconds: float timestamps around 1.7e9 carry about a microsecond of error, summed over the calls.
ROUNDING = 0.001


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[Bus]:
    server = NatsServer(tmp_path / "nats")
    await server.start()
    bus = await Bus.connect(server.url, "test-rate-limit", 1)
    try:
        yield bus
    finally:
        await bus.close()
        await server.stop()


async def test_two_replicas_pace_one_account_together(bus: Bus) -> None:
    replicas = [await RateLimiter.open(bus), await RateLimiter.open(bus)]
    waits, answered = [], []
    began = time.time()
    for n in range(30):
        waits.append(await replicas[n % 2].reserve("account.twilio-main", RATE, max_wait=60))
        answered.append(time.time())
    # The first ten go at once (the burst); after it, no call waits longer than the rate asks: a tenth of a second
    # more per call, less the time the calls themselves took (so a slow machine only shortens the waits).
    assert all(w <= max(0, n - 9) / RATE + ROUNDING for n, w in enumerate(waits)), waits
    # Whichever replica reserves it, the 30th call may go two seconds after the first, not half a second as with a
    # limit per replica (ten at once, then five more) - however long the calls took.
    assert answered[-1] + waits[-1] - began >= (30 - 10) / RATE - ROUNDING, (answered[-1] - began, waits)


async def test_a_wait_over_the_callers_limit_takes_no_slot(bus: Bus) -> None:
    slow = 0.5  # per second: one call every two seconds, so a busy machine's delays cannot refill the slot
    limiter, other = await RateLimiter.open(bus), await RateLimiter.open(bus)
    assert await limiter.reserve("account.slow", slow, max_wait=0) == 0
    refused = await other.reserve("account.slow", slow, max_wait=0)
    assert 0 < refused <= 1 / slow
    # Refused, so not taken: the next caller is told about the same time, not another interval later.
    again = await limiter.reserve("account.slow", slow, max_wait=0)
    assert 0 < again <= refused + ROUNDING
    # Another key is not held back.
    assert await other.reserve("account.fast", RATE, max_wait=0) == 0
