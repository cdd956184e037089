"""The shared rate limiter: replicas that each hold their own limiter still share one limit, because its state is
one compare-and-set value per key in NATS KV (a real nats-server here)."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from libs.bus import Bus
from libs.localmesh import NatsServer
from libs.rate_limit import RateLimiter

RATE = 10.0  # per second, in bursts of up to 10


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
    waits = [await replicas[n % 2].reserve("account.twilio-main", RATE, max_wait=60) for n in range(30)]
    # The first ten go at once (the burst); each later call waits a tenth of a second more, whichever replica
    # reserves it: the 30th is two seconds out, not one, as it would be with a limit per replica.
    assert all(w < 0.05 for w in waits[:10])
    assert waits == sorted(waits)
    assert waits[-1] == pytest.approx((30 - 10) / RATE, abs=0.1)


async def test_a_wait_over_the_callers_limit_takes_no_slot(bus: Bus) -> None:
    limiter, other = await RateLimiter.open(bus), await RateLimiter.open(bus)
    for _ in range(10):
        assert await limiter.reserve("account.slow", RATE, max_wait=0) == 0
    refused = await other.reserve("account.slow", RATE, max_wait=0)
    assert 0 < refused <= 1 / RATE
    # Refused, so not taken: the next caller is told the same time, not a tenth of a second later.
    assert await limiter.reserve("account.slow", RATE, max_wait=0) == pytest.approx(refused, abs=0.02)
    # Another key is not held back.
    assert await other.reserve("account.fast", RATE, max_wait=0) == 0
