"""herald-router's own settings (the shared ones: herald/libs/config.py)."""

from collections.abc import Mapping
from dataclasses import dataclass

from herald.v1 import common_pb2

from herald.libs import config, ports


@dataclass(frozen=True)
class RouterSettings:
    # Where herald-intake answers, for the router's questions about apps and templates.
    intake_addr: str
    # The same content to the same recipient and channel goes out once within this many seconds; 0 = off.
    dedup_window_seconds: float
    pipelines: tuple[common_pb2.Category.ValueType, ...]
    # An e-mail address that bounced temporarily this many times within the window is suppressed.
    soft_bounce_limit: int
    soft_bounce_window_days: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "RouterSettings":
        return cls(
            intake_addr=env.get("HERALD_INTAKE_ADDR") or ports.grpc_addr("intake"),
            dedup_window_seconds=config.number(env, "HERALD_DEDUP_WINDOW_SECONDS", "0", float, 0.0),
            pipelines=config.pipelines(env),
            soft_bounce_limit=config.number(env, "HERALD_SOFT_BOUNCE_LIMIT", "3", int, 1),
            soft_bounce_window_days=config.number(env, "HERALD_SOFT_BOUNCE_WINDOW_DAYS", "7", int, 1),
        )
