"""herald-intake's own settings (the shared ones: herald/libs/config.py)."""

from collections.abc import Mapping
from dataclasses import dataclass

from herald.libs import config


@dataclass(frozen=True)
class IntakeSettings:
    # intake refuses new marketing messages (RESOURCE_EXHAUSTED, with when to retry) while more marketing work
    # than this waits in the queues behind it (herald/services/intake/shedding.py); 0 = never.
    marketing_backlog_limit: int
    retention_check_seconds: float
    # Private or loopback hosts an app's status webhook may name all the same (the SSRF guard's exceptions).
    webhook_allowed_hosts: frozenset[str]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "IntakeSettings":
        return cls(
            marketing_backlog_limit=config.number(env, "HERALD_MARKETING_BACKLOG_LIMIT", "1000000", int, 0),
            retention_check_seconds=config.retention_check_seconds(env),
            webhook_allowed_hosts=config.allowed_hosts(env),
        )
