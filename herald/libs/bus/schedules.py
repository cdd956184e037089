"""Schedules: a message stored in HERALD_SCHEDULES under a subject that names it, which the server publishes to
its target at its time (JetStream message schedules, nats-server 2.12)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# How long what a schedule fires stays in its stream (its own TTL: HERALD_SCHEDULES keeps definitions far longer).
SCHEDULE_FIRED_TTL = "168h"
# JetStream's error code for a publish whose Nats-Expected-Last-Subject-Sequence no longer holds.
WRONG_LAST_SEQUENCE = 10071


@dataclass(frozen=True)
class Scheduled:
    payload: bytes
    # Its sequence in HERALD_SCHEDULES, for replacing it by compare-and-set (Bus.schedule).
    sequence: int


class ScheduleChanged(Exception):
    """A schedule was replaced, fired or made by someone else since it was read."""


def schedule_headers(at: datetime, target: str, replacing: int | None) -> dict[str, str]:
    """The headers that make a message a schedule firing onto `target` at `at`; with `replacing`, only if the
    subject's last message is still that sequence (compare-and-set)."""
    # @at takes whole seconds: round up, so nothing fires before its time.
    whole = at.astimezone(UTC).replace(microsecond=0) + (timedelta(seconds=1) if at.microsecond else timedelta())
    headers = {
        "Nats-Schedule": f"@at {whole.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        "Nats-Schedule-Target": target,
        "Nats-Schedule-TTL": SCHEDULE_FIRED_TTL,
    }
    if replacing is not None:
        headers["Nats-Expected-Last-Subject-Sequence"] = str(replacing)
    return headers
