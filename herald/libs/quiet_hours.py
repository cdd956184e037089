"""Quiet hours: when a notification or marketing delivery must wait for the recipient's morning.

Shared by intake (an app's default) and router (a user's own, and the decision).
A window is "HH:MM" to "HH:MM" in the recipient's local time and may cross
midnight; a delivery due inside it is held until the window ends.
"""

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from herald.v1 import common_pb2

DEFAULT = common_pb2.QuietHours(start="22:00", end="08:00")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def problem(quiet: common_pb2.QuietHours) -> str | None:
    """Why `quiet` is not a usable window, or None."""
    if quiet.disabled:
        return None
    if not (_CLOCK.match(quiet.start) and _CLOCK.match(quiet.end)):
        return "start and end are 24-hour 'HH:MM' times, e.g. '22:00' and '08:00'"
    if quiet.start == quiet.end:
        return "start and end are the same; set disabled for no quiet hours"
    return None


def release_time(quiet: common_pb2.QuietHours, timezone: str, at: datetime) -> datetime | None:
    """When the window that `at` falls in ends (aware, UTC-comparable), or None when `at` is not in one."""
    if quiet.disabled or problem(quiet):
        return None
    local = at.astimezone(ZoneInfo(timezone))
    start, end = _clock(quiet.start), _clock(quiet.end)
    now = local.time()
    inside = start <= now < end if start < end else now >= start or now < end
    if not inside:
        return None
    release = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if release <= local:
        release += timedelta(days=1)
    return release


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))
