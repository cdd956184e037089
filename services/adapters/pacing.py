"""Per-account rate limits: a token bucket per provider account and process, so herald stays under the QPS the
provider allows instead of learning it from 429s."""

import time
from collections.abc import Callable


class TokenBucket:
    """`rate` calls per second, in bursts of up to one second's worth."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._clock = clock
        self._stamp = clock()

    def reserve(self, max_wait: float) -> float:
        """The seconds to wait before the next call may be made. The token is taken only when that is at most
        `max_wait`; a longer answer says when to come back."""
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        wait = max(0.0, (1.0 - self._tokens) / self._rate)
        if wait <= max_wait:
            self._tokens -= 1.0
        return wait
