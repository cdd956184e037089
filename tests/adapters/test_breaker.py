"""An account's circuit breaker: it opens after repeated failures, lets one probe through after its cooldown, and
a probe that never reports does not keep the account shut for good."""

from herald.services.adapters.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _opened(clock: Clock) -> CircuitBreaker:
    breaker = CircuitBreaker(failures_to_open=2, cooldown=5.0, clock=clock)
    breaker.failed()
    breaker.failed()
    assert breaker.state == "open" and not breaker.try_acquire()
    return breaker


def test_after_the_cooldown_one_probe_goes_and_its_success_closes_the_circuit() -> None:
    clock = Clock()
    breaker = _opened(clock)
    clock.now = 5.0
    assert breaker.try_acquire(), "the probe"
    assert not breaker.try_acquire(), "one probe at a time"
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.try_acquire()


def test_a_failed_probe_opens_the_circuit_for_another_cooldown() -> None:
    clock = Clock()
    breaker = _opened(clock)
    clock.now = 5.0
    assert breaker.try_acquire()
    breaker.failed()
    clock.now = 9.9
    assert not breaker.try_acquire()
    clock.now = 10.0
    assert breaker.try_acquire()


def test_a_probe_that_never_reports_is_given_up_after_a_cooldown() -> None:
    """Its batch failed before the call was made (the database was down), or the process was stopping: before,
    the account took no call in this process again until it restarted."""
    clock = Clock()
    breaker = _opened(clock)
    clock.now = 5.0
    assert breaker.try_acquire()
    clock.now = 9.9
    assert not breaker.try_acquire(), "the probe is still waited for"
    clock.now = 10.0
    assert breaker.state == "half_open" and breaker.try_acquire(), "the lost probe's turn passes to the next call"
