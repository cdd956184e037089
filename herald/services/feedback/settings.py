"""herald-feedback's own settings (the shared ones: herald/libs/config.py)."""

from collections.abc import Mapping
from dataclasses import dataclass

from herald.libs import config


@dataclass(frozen=True)
class FeedbackSettings:
    retention_check_seconds: float
    # Days the audit trail keeps a record (HERALD_AUDIT_RETENTION_DAYS): a year by default, which most security
    # reviews ask for; an app's content retention does not shorten it.
    audit_retention_days: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "FeedbackSettings":
        return cls(
            retention_check_seconds=config.retention_check_seconds(env),
            audit_retention_days=config.number(env, "HERALD_AUDIT_RETENTION_DAYS", "365", int, 1),
        )
