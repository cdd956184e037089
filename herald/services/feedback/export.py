"""Raw status events for the data platform, streamed as CSV or Parquet: read from the database a slice at a time
and encoded a slice at a time, so an export of any size holds only one slice in memory. Each slice is its own
short read, continuing after the last event of the one before, so a long export never holds a database connection
(SQLite has only one) while the client reads.

Each event is joined with its delivery for the app, message, template, user and channel. Rendered content stays
out: it is what retention purges, and the data platform has no need for it.
"""

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from herald.v1 import common_pb2
from herald.v1 import status_service_pb2 as pb
from sqlalchemy import and_, or_, select

from herald.libs.events import state_name
from herald.libs.store import Database
from herald.services.feedback import tables

SLICE = 5000
E, D = tables.Event, tables.Delivery
COLUMNS = (
    E.event_id,
    E.occur_time,
    D.app_id,
    D.message_id,
    E.delivery_id,
    D.template_id,
    D.user_id,
    D.channel,
    E.state,
    E.attempt,
    E.reason,
    E.provider,
)
NAMES = [c.key for c in COLUMNS]


class Encoder(Protocol):
    def add(self, rows: list[tuple[Any, ...]]) -> bytes: ...

    def finish(self) -> bytes: ...


def parquet_installed() -> bool:
    """Parquet needs pyarrow, herald's `parquet` extra: not every image carries it."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _parquet() -> Encoder:
    """Imported here, not at the top: only an export asking for Parquet needs the extra."""
    from herald.services.feedback.parquet_export import ParquetEncoder

    return ParquetEncoder(NAMES)


@dataclass(frozen=True)
class Range:
    start: datetime
    end: datetime
    app_id: str | None


async def export(db: Database, what: Range, format: int) -> AsyncIterator[bytes]:
    encoder: Encoder = _Csv() if format == pb.EXPORT_FORMAT_CSV else _parquet()
    async for rows in _slices(db, what):
        if data := encoder.add(rows):
            yield data
    yield encoder.finish()


async def _slices(db: Database, what: Range) -> AsyncIterator[list[tuple[Any, ...]]]:
    query = (
        select(*COLUMNS)
        .join(D, D.delivery_id == E.delivery_id)
        .where(E.occur_time >= what.start, E.occur_time < what.end)
        .order_by(E.occur_time, E.event_id)
        .limit(SLICE)
    )
    if what.app_id is not None:
        query = query.where(D.app_id == what.app_id)
    after = query
    while True:
        async with db.session() as session:
            rows = [tuple(row) for row in await session.execute(after)]
        if not rows:
            return
        yield [(*row[:8], state_name(common_pb2.DeliveryState.ValueType(row[8])), *row[9:]) for row in rows]
        if len(rows) < SLICE:
            return
        when, event_id = rows[-1][1], rows[-1][0]
        after = query.where(or_(E.occur_time > when, and_(E.occur_time == when, E.event_id > event_id)))


class _Csv:
    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer)
        self._writer.writerow(NAMES)

    def add(self, rows: list[tuple[Any, ...]]) -> bytes:
        self._writer.writerows((r[0], r[1].isoformat().replace("+00:00", "Z"), *r[2:]) for r in rows)
        data = self._buffer.getvalue().encode()
        self._buffer.seek(0)
        self._buffer.truncate()
        return data

    def finish(self) -> bytes:
        return self.add([])
