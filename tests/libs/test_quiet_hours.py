"""Quiet-hour windows in the recipient's local time, across midnight and time zones."""

from datetime import UTC, datetime

import pytest
from herald.v1 import common_pb2

from herald.libs import quiet_hours

NIGHT = common_pb2.QuietHours(start="22:00", end="08:00")


@pytest.mark.parametrize(
    ("utc", "zone", "release"),
    [
        ("2026-11-21T15:00:00", "Asia/Shanghai", "2026-11-22T08:00:00+08:00"),  # 23:00 local
        ("2026-11-21T20:30:00", "Asia/Shanghai", "2026-11-22T08:00:00+08:00"),  # 04:30 local
        ("2026-11-21T02:00:00", "Asia/Shanghai", None),  # 10:00 local
        ("2026-11-21T23:30:00", "UTC", "2026-11-22T08:00:00+00:00"),
        ("2026-11-21T07:59:00", "UTC", "2026-11-21T08:00:00+00:00"),
        ("2026-11-21T08:00:00", "UTC", None),
    ],
)
def test_release_time(utc: str, zone: str, release: str | None) -> None:
    at = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    got = quiet_hours.release_time(NIGHT, zone, at)
    assert (got.isoformat() if got else None) == release


def test_a_daytime_window_and_a_disabled_one() -> None:
    lunch = common_pb2.QuietHours(start="12:00", end="13:30")
    assert quiet_hours.release_time(lunch, "UTC", datetime(2026, 1, 1, 12, 15, tzinfo=UTC)) == datetime(
        2026, 1, 1, 13, 30, tzinfo=UTC
    )
    assert quiet_hours.release_time(lunch, "UTC", datetime(2026, 1, 1, 14, 0, tzinfo=UTC)) is None
    off = common_pb2.QuietHours(disabled=True)
    assert quiet_hours.release_time(off, "UTC", datetime(2026, 1, 1, 23, 0, tzinfo=UTC)) is None


@pytest.mark.parametrize(("start", "end"), [("25:00", "08:00"), ("22:00", "8"), ("09:00", "09:00")])
def test_bad_windows_are_named(start: str, end: str) -> None:
    assert quiet_hours.problem(common_pb2.QuietHours(start=start, end=end))
