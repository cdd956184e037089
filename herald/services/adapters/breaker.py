"""A circuit breaker per provider account, per process: after repeated failures the account takes no traffic
for a while, so its deliveries go to the next account instead of waiting on timeouts; then a single probe
decides whether it is back. A probe that never reports (its batch failed before the call was made, the process
was stopping) counts as lost after another cooldown, and the next call may probe."""

import time
from collections.abc import Callable

FAILURES_TO_OPEN = 5
COOLDOWN_SECONDS = 5.0


class CircuitBreaker:
    def __init__(
        self,
        failures_to_open: int = FAILURES_TO_OPEN,
        cooldown: float = COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._failures_to_open = failures_to_open
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._open_until: float | None = None
        # While a probe is out: until when it is waited for before it counts as lost.
        self._probe_until: float | None = None

    @property
    def state(self) -> str:
        if self._open_until is None:
            return "closed"
        now = self._clock()
        probing = self._probe_until is not None and now < self._probe_until
        return "open" if now < self._open_until or probing else "half_open"

    def try_acquire(self) -> bool:
        """May a call go to this account now? In half-open, only one call (the probe) at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open":
            self._probe_until = self._clock() + self._cooldown
            return True
        return False

    def cancel(self) -> None:
        """The call `try_acquire` allowed will not be made after all."""
        self._probe_until = None

    def succeeded(self) -> None:
        self._failures = 0
        self._open_until = None
        self._probe_until = None

    def failed(self, *, at_once: bool = False) -> None:
        """Count a failure; `at_once` opens the circuit on this one (the credentials were refused)."""
        self._failures += 1
        self._probe_until = None
        if at_once or self._failures >= self._failures_to_open or self._open_until is not None:
            self._open_until = self._clock() + self._cooldown
