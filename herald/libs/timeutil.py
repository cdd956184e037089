"""Conversions between aware datetimes and protobuf Timestamps (unset Timestamp = None). By arithmetic from the
epoch: a third of the cost of protobuf's FromDatetime/ToDatetime, paid for every status event."""

from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp


def now() -> datetime:
    return datetime.now(UTC)


def to_timestamp(dt: datetime) -> Timestamp:
    since = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)) - _EPOCH
    return Timestamp(seconds=since.days * 86400 + since.seconds, nanos=since.microseconds * 1000)


def from_timestamp(ts: Timestamp) -> datetime | None:
    """None for an unset Timestamp; ValueError for one outside what a Timestamp may hold (years 1-9999)."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    if not 0 <= ts.nanos < 1_000_000_000 or not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS:
        raise ValueError("not a valid timestamp")
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_SECONDS = -62135596800  # 0001-01-01T00:00:00Z
_MAX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z
# What a Duration may hold (google/protobuf/duration.proto): about 10,000 years either way.
_MAX_DURATION_SECONDS = 315_576_000_000


def timestamp_field(request: Message, field: str, bad: dict[str, str]) -> datetime | None:
    """A request's Timestamp field (None when unset). One outside years 1-9998 goes into `bad` by field: no date
    can hold it, or none can once rounded out to whole hours and days."""
    if not request.HasField(field):  # most are unset: asked first, as it costs a fraction of reading one
        return None
    try:
        when = from_timestamp(getattr(request, field))
        if when is None or when.year <= 9998:
            return when
    except ValueError:
        pass
    bad[field] = "not a valid timestamp: seconds within years 1-9998, nanos 0-999999999"
    return None


def duration_field(request: Message, field: str, bad: dict[str, str], where: str = "") -> timedelta | None:
    """A request's Duration field as a timedelta (None when unset). One that duration.proto does not allow (seconds
    past 10,000 years, nanos past a second or of the other sign than the seconds) goes into `bad` under `where`
    (default: `field`): protobuf's own conversions fail on it with errors that would reach the caller as
    INTERNAL."""
    if not request.HasField(field):
        return None
    value: Duration = getattr(request, field)
    seconds, nanos = value.seconds, value.nanos
    if abs(seconds) > _MAX_DURATION_SECONDS or abs(nanos) >= 1_000_000_000 or seconds * nanos < 0:
        bad[where or field] = (
            "not a valid duration: seconds within +-315576000000, nanos within +-999999999 and of the same sign"
        )
        return None
    return timedelta(seconds=seconds, microseconds=nanos // 1000 if nanos >= 0 else -(-nanos // 1000))
