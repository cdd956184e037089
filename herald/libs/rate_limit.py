"""Rate limits shared by every replica: GCRA with its state in NATS KV. intake limits each app's Sends; the
adapters pace each provider account's calls, so N adapters processes together stay under the provider's QPS.

GCRA (the generic cell rate algorithm) keeps one number per key (an app, a
provider account), the theoretical arrival time (TAT) of the next message. At rate r the emission interval is
T = 1/r and bursts of up to max(1, r) messages (one second's worth) are
allowed: a message is accepted when now >= TAT - tolerance, and accepting k
messages moves TAT to max(TAT, now) + k*T. That number lives in the KV bucket
`herald_rate_limits`, updated by compare-and-set on the entry's revision, so
replicas share one limit exactly; within a replica, calls for one key queue on
a lock so only cross-replica races ever retry.
"""

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TypeVar

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from herald.libs.bus import Bucket, KeyValues

BUCKET = "herald_rate_limits"
# A TAT an hour old is in the past whatever the rate: the entry may go.
ENTRY_TTL = 3600.0
MAX_RACES = 20

T = TypeVar("T")


class RateLimiter:
    def __init__(self, kv: Bucket) -> None:
        self._kv = kv
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # key -> (TAT, KV revision) as this replica last wrote or read it.
        self._known: dict[str, tuple[float, int]] = {}

    @classmethod
    async def open(cls, bus: KeyValues) -> "RateLimiter":
        return cls(await bus.key_value(BUCKET, ttl=ENTRY_TTL, memory=True))

    async def take(self, key: str, rate: float, wanted: int) -> tuple[int, float]:
        """Accept up to `wanted` messages now; returns how many, and for the rest the seconds until the next fits."""
        if rate <= 0 or wanted <= 0:
            return wanted, 0.0
        interval, tolerance = _cell(rate)

        def decide(tat: float, clock: float) -> tuple[float | None, tuple[int, float]]:
            base = max(tat, clock)
            fits = math.floor((clock + tolerance - base) / interval + 1e-9) + 1 if base - tolerance <= clock else 0
            granted = max(0, min(wanted, fits))
            new_tat = base + granted * interval
            retry_after = max(0.0, new_tat - tolerance - clock)
            if granted == 0:
                return None, (0, retry_after)
            return new_tat, (granted, retry_after if granted < wanted else 0.0)

        return await self._change(key, decide)

    async def reserve(self, key: str, rate: float, max_wait: float) -> float:
        """The seconds until one more call may be made. The slot is taken only when that is at most `max_wait`
        (the caller waits, then calls); a longer answer says when to come back."""
        if rate <= 0:
            return 0.0
        interval, tolerance = _cell(rate)

        def decide(tat: float, clock: float) -> tuple[float | None, float]:
            base = max(tat, clock)
            wait = max(0.0, base - tolerance - clock)
            return (base + interval if wait <= max_wait else None), wait

        return await self._change(key, decide)

    async def _change(self, key: str, decide: Callable[[float, float], tuple[float | None, T]]) -> T:
        """Apply `decide(TAT, now) -> (new TAT or None to leave it, answer)` by compare-and-set."""
        async with self._locks[key]:
            for _ in range(MAX_RACES):
                tat, revision = self._known.get(key) or await self._read(key)
                new_tat, answer = decide(tat, time.time())
                if new_tat is None:
                    return answer
                try:
                    if revision:
                        revision = await self._kv.update(key, repr(new_tat).encode(), last=revision)
                    else:
                        revision = await self._kv.create(key, repr(new_tat).encode())
                except KeyWrongLastSequenceError:
                    self._known.pop(key, None)  # another replica moved it: read and decide again
                    continue
                self._known[key] = (new_tat, revision)
                return answer
        raise TimeoutError(f"rate limit state for {key} kept changing under us")

    async def _read(self, key: str) -> tuple[float, int]:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return 0.0, 0
        return float(entry.value or b"0"), entry.revision or 0


def _cell(rate: float) -> tuple[float, float]:
    """The emission interval, and how far ahead of it a burst of one second's worth may run."""
    interval = 1.0 / rate
    return interval, (max(1.0, rate) - 1.0) * interval
