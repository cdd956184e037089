"""Per-app rate limits shared by every intake replica: GCRA with its state in NATS KV.

GCRA (the generic cell rate algorithm) keeps one number per app, the theoretical
arrival time (TAT) of the next message. At rate r the emission interval is
T = 1/r and bursts of up to max(1, r) messages (one second's worth) are
allowed: a message is accepted when now >= TAT - tolerance, and accepting k
messages moves TAT to max(TAT, now) + k*T. That number lives in the KV bucket
`herald_rate_limits`, updated by compare-and-set on the entry's revision, so
replicas share one limit exactly; within a replica, calls for one app queue on
a lock so only cross-replica races ever retry.
"""

import asyncio
import math
import time
from collections import defaultdict

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from libs.bus import Bus

BUCKET = "herald_rate_limits"
# A TAT an hour old is in the past whatever the rate: the entry may go.
ENTRY_TTL = 3600.0
MAX_RACES = 20


class RateLimiter:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # app -> (TAT, KV revision) as this replica last wrote or read it.
        self._known: dict[str, tuple[float, int]] = {}

    @classmethod
    async def open(cls, bus: Bus) -> "RateLimiter":
        return cls(await bus.key_value(BUCKET, ttl=ENTRY_TTL, memory=True))

    async def take(self, app_id: str, rate: float, wanted: int) -> tuple[int, float]:
        """Accept up to `wanted` messages now; returns how many, and for the rest the seconds until the next fits."""
        if rate <= 0 or wanted <= 0:
            return wanted, 0.0
        interval = 1.0 / rate
        tolerance = (max(1.0, rate) - 1.0) * interval
        async with self._locks[app_id]:
            for _ in range(MAX_RACES):
                tat, revision = self._known.get(app_id) or await self._read(app_id)
                clock = time.time()
                base = max(tat, clock)
                fits = math.floor((clock + tolerance - base) / interval + 1e-9) + 1 if base - tolerance <= clock else 0
                granted = max(0, min(wanted, fits))
                new_tat = base + granted * interval
                retry_after = max(0.0, new_tat - tolerance - clock)
                if granted == 0:
                    return 0, retry_after
                try:
                    if revision:
                        revision = await self._kv.update(app_id, repr(new_tat).encode(), last=revision)
                    else:
                        revision = await self._kv.create(app_id, repr(new_tat).encode())
                except KeyWrongLastSequenceError:
                    self._known.pop(app_id, None)  # another replica moved it: read and decide again
                    continue
                self._known[app_id] = (new_tat, revision)
                return granted, retry_after if granted < wanted else 0.0
        raise TimeoutError(f"rate limit state for {app_id} kept changing under us")

    async def _read(self, app_id: str) -> tuple[float, int]:
        try:
            entry = await self._kv.get(app_id)
        except KeyNotFoundError:
            return 0.0, 0
        return float(entry.value or b"0"), entry.revision or 0
