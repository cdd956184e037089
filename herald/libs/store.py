"""The store base: an async SQLAlchemy engine per service and its Alembic migrations.

Each service keeps its tables in its own migration history (version table
`alembic_version_<service>`) and prefixes their names with the service name, so
the four services can share one PostgreSQL database without sharing a table.
"""

import functools
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from alembic import command, context
from alembic.config import Config
from sqlalchemy import DateTime, Dialect, MetaData, Select, Table, TextClause, delete, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.types import TypeDecorator

from herald.libs.config import DEFAULT_POOL_SIZE
from herald.libs.sqlite_connection import SqliteConnection

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
# Rows one purge transaction deletes: a first purge over millions of rows never holds one huge transaction.
PURGE_SLICE = 1000


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _json_rows(dialect: Dialect, table: Table, columns: Sequence[str]) -> tuple[str, dict[str, str]]:
    """Where the JSON parameter `:rows` is read as a table `r` - json_to_recordset() on PostgreSQL, json_each() on
    SQLite - and the expression of each column of `r`. Only the table's own column names go into the text (table.c
    refuses others)."""
    names = [table.c[c].name for c in columns]
    if dialect.name == "postgresql":
        types = ", ".join(f"{name} {table.c[name].type.compile(dialect=dialect)}" for name in names)
        return f"json_to_recordset(CAST(:rows AS json)) AS r({types})", {name: f"r.{name}" for name in names}
    return "json_each(:rows) AS r", {name: f"json_extract(r.value, '$.{name}')" for name in names}


@functools.cache
def _json_insert(
    dialect: Dialect, table: Table, columns: tuple[str, ...], key: tuple[str, ...], add: tuple[str, ...], returning: str
) -> TextClause:
    """The INSERT for Database.insert_rows, written once per table and shape (it runs for every batch). SQLite's
    parser needs the WHERE before an ON CONFLICT."""
    source, value = _json_rows(dialect, table, columns)
    sql = f"INSERT INTO {table.name} ({', '.join(value)}) SELECT {', '.join(value.values())} FROM {source} WHERE true"  # noqa: S608
    if key:
        sets = ", ".join(f"{c} = {table.name}.{c} + excluded.{c}" for c in add)
        sql += f" ON CONFLICT ({', '.join(key)}) DO " + (f"UPDATE SET {sets}" if add else "NOTHING")
    if returning:
        sql += f" RETURNING {returning}"
    return text(sql)


@functools.cache
def _json_update(dialect: Dialect, table: Table, columns: tuple[str, ...], key: str) -> TextClause:
    """The UPDATE for Database.update_rows, as _json_insert: each row's `columns` set on the row of its `key`."""
    source, value = _json_rows(dialect, table, (key, *columns))
    sets = ", ".join(f"{name} = {value[name]}" for name in (table.c[c].name for c in columns))
    match = table.c[key].name
    return text(f"UPDATE {table.name} SET {sets} FROM {source} WHERE {table.name}.{match} = {value[match]}")  # noqa: S608


# SQLAlchemy's storage format for SQLite DATETIME is "%Y-%m-%d %H:%M:%S.%f": an ISO time with a space, cut before
# the offset (isoformat writes it twice as fast as strftime).
SQLITE_DATETIME_LENGTH = len("2026-01-01 00:00:00.000000")


def _sqlite_json_value(value: object) -> str:
    """A datetime as SQLAlchemy stores one in SQLite (UTC, always with microseconds), so that the text compares
    and reads back the same whichever way the row was written."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(" ", "microseconds")[:SQLITE_DATETIME_LENGTH]
    raise TypeError(f"{type(value).__name__} cannot be stored through insert_rows")


# How many PostgreSQL connections a burst may open beyond the pool (HERALD_DATABASE_POOL_SIZE).
BURST_CONNECTIONS = 10


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.session = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def open(cls, url: str, service: str, pool_size: int = DEFAULT_POOL_SIZE) -> "Database":
        """Connect and bring the service's tables up to date. `pool_size`: the PostgreSQL connections kept open
        (as many more are opened for a burst, and closed after it)."""
        db = cls(_create_engine(url, pool_size))
        async with db.engine.begin() as conn:
            await conn.run_sync(_upgrade, service)
        return db

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def insert_rows(
        self,
        session: AsyncSession,
        table: Table,
        rows: list[dict[str, Any]],
        *,
        key: Sequence[str] = (),
        add: Sequence[str] = (),
        returning: str = "",
    ) -> list[Any]:
        """Insert many rows in one statement, cheaply at any count; returns the `returning` column of the rows
        inserted (or updated).

        `key`: on a conflict over these columns skip the row, or, with `add`, add the row's values of those columns
        to the stored ones; no key = a conflict raises IntegrityError. The rows travel as one JSON document
        (_json_insert): the statement's text - which a driver parses on every call unless it is short - stays the
        same size however many rows there are, and encoding the rows is one call of a JSON encoder, not SQLAlchemy's
        and the driver's work per value (on SQLite that was a third of feedback's CPU).
        """
        if not rows:
            return []
        statement = _json_insert(self.engine.dialect, table, tuple(rows[0]), tuple(key), tuple(add), returning)
        result = await session.execute(statement, {"rows": self._json(rows)})
        return list(result.scalars()) if returning else []

    async def update_rows(self, session: AsyncSession, table: Table, rows: list[dict[str, Any]], *, key: str) -> None:
        """Set each row's columns on the stored row of the same `key`, in one statement per set of columns, the rows
        as one JSON document (see insert_rows). The rows to change must be locked already (SELECT ... FOR UPDATE,
        in key order): the statement visits them in no particular order."""
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            shapes.setdefault(tuple(c for c in row if c != key), []).append(row)
        for columns, alike in shapes.items():
            statement = _json_update(self.engine.dialect, table, columns, key)
            await session.execute(statement, {"rows": self._json(alike)})

    def _json(self, rows: list[dict[str, Any]]) -> str:
        """The rows as the JSON document _json_rows reads, times written as this backend stores them (orjson: the
        standard library's encoder was an eighth of feedback's CPU)."""
        if self.is_sqlite:
            return orjson.dumps(rows, default=_sqlite_json_value, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
        return orjson.dumps(rows).decode()

    async def purge(self, victims: Select[Any], *by_key: InstrumentedAttribute[Any]) -> int:
        """Delete the rows whose keys `victims` selects, PURGE_SLICE at a time, from the table of each `by_key`
        column (dependants first); returns how many keys went. Idempotent: replicas purging at once only repeat
        each other's no-op."""
        purged = 0
        while True:
            async with self.session.begin() as session:
                keys = list(await session.scalars(victims.limit(PURGE_SLICE)))
                for column in by_key:
                    await session.execute(delete(column.class_).where(column.in_(keys)))
            purged += len(keys)
            if len(keys) < PURGE_SLICE:
                return purged

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def close(self) -> None:
        await self.engine.dispose()


def _create_engine(url: str, pool_size: int) -> AsyncEngine:
    # hide_parameters: a database error's text, which is logged, must not carry the statement's values -
    # rendered content, addresses, tokens.
    if not url.startswith("sqlite"):
        return create_async_engine(
            url, pool_size=pool_size, max_overflow=BURST_CONNECTIONS, pool_pre_ping=True, hide_parameters=True
        )
    # One connection: SQLite has one writer at a time anyway, and queueing in the pool is far
    # cheaper than several connections polling the file lock (its busy handler sleeps).
    path = make_url(url).database or ""

    async def connect() -> SqliteConnection:
        return await SqliteConnection(path).open()

    engine = create_async_engine(
        url, async_creator=connect, pool_size=1, max_overflow=0, pool_timeout=60, hide_parameters=True
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, _: Any) -> None:
        # WAL lets readers run beside the single writer; NORMAL sync in WAL mode
        # survives a process crash (an OS crash may lose the last commits).
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


def _upgrade(conn: Connection, service: str) -> None:
    if conn.dialect.name == "postgresql":
        # Replicas starting together must not run the same migration twice.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(service.encode())})
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.attributes["connection"] = conn
    cfg.attributes["service"] = service
    command.upgrade(cfg, "head")


def run_migrations(metadata: MetaData) -> None:
    """The body of every service's migrations/env.py: run on the connection Database.open hands over."""
    conn: Connection = context.config.attributes["connection"]
    service: str = context.config.attributes["service"]
    context.configure(
        connection=conn,
        target_metadata=metadata,
        version_table=f"alembic_version_{service}",
        render_as_batch=conn.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
