"""herald-feedback's own settings (the shared ones: herald/libs/config.py)."""

from collections.abc import Mapping
from dataclasses import dataclass

from herald.libs import config


@dataclass(frozen=True)
class FeedbackSettings:
    retention_check_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "FeedbackSettings":
        return cls(retention_check_seconds=config.retention_check_seconds(env))
