"""The store base: an async SQLAlchemy engine per service and its Alembic migrations.

Each service keeps its tables in its own migration history (version table
`alembic_version_<service>`) and prefixes their names with the service name, so
the four services can share one PostgreSQL database without sharing a table.
"""

import functools
import itertools
import operator
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from alembic import command, context
from alembic.config import Config
from sqlalchemy import JSON, DateTime, Dialect, MetaData, Select, Table, TextClause, delete, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DisconnectionError
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
    """Where PostgreSQL reads the JSON parameter `:rows` as a table `r`, and the expression of each column of `r`.
    Only the table's own column names go into the text (table.c refuses others)."""
    names = [table.c[c].name for c in columns]
    types = ", ".join(f"{name} {table.c[name].type.compile(dialect=dialect)}" for name in names)
    return f"json_to_recordset(CAST(:rows AS json)) AS r({types})", {name: f"r.{name}" for name in names}


def _conflict(table: Table, key: tuple[str, ...], add: tuple[str, ...], returning: str) -> str:
    """What an insert_rows INSERT does on a conflict over `key`, and what it returns."""
    sql = ""
    if key:
        sets = ", ".join(f"{c} = {table.name}.{c} + excluded.{c}" for c in add)
        sql += f" ON CONFLICT ({', '.join(key)}) DO " + (f"UPDATE SET {sets}" if add else "NOTHING")
    if returning:
        sql += f" RETURNING {returning}"
    return sql


@functools.cache
def _json_insert(
    dialect: Dialect, table: Table, columns: tuple[str, ...], key: tuple[str, ...], add: tuple[str, ...], returning: str
) -> TextClause:
    """PostgreSQL's INSERT for Database.insert_rows, written once per table and shape (it runs for every batch)."""
    source, value = _json_rows(dialect, table, columns)
    sql = f"INSERT INTO {table.name} ({', '.join(value)}) SELECT {', '.join(value.values())} FROM {source}"  # noqa: S608
    return text(sql + _conflict(table, key, add, returning))


@functools.lru_cache(maxsize=256)
def _values_insert(
    table: Table, columns: tuple[str, ...], key: tuple[str, ...], add: tuple[str, ...], returning: str, rows: int
) -> str:
    """SQLite's INSERT for Database.insert_rows: `rows` rows of `?` parameters. Its own JSON functions would parse
    each row's object again for every column it extracts (SQLite 3.40 keeps no parsed JSON), so sqlite3 binding the
    values natively costs a delivery's row a fifth less; the text is parsed per count of rows, at a fraction of that."""
    names = [table.c[c].name for c in columns]
    row = f"({', '.join('?' * len(names))})"
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES {', '.join([row] * rows)}"  # noqa: S608
    return sql + _conflict(table, key, add, returning)


@functools.cache
def _json_update(dialect: Dialect, table: Table, columns: tuple[str, ...], key: str) -> TextClause:
    """PostgreSQL's UPDATE for Database.update_rows, as _json_insert: each row's `columns` set on the row of its
    `key`."""
    source, value = _json_rows(dialect, table, (key, *columns))
    sets = ", ".join(f"{name} = {value[name]}" for name in (table.c[c].name for c in columns))
    match = table.c[key].name
    return text(f"UPDATE {table.name} SET {sets} FROM {source} WHERE {table.name}.{match} = {value[match]}")  # noqa: S608


@functools.cache
def _values_update(table: Table, columns: tuple[str, ...], key: str) -> str:
    """SQLite's UPDATE for Database.update_rows, run once per row (executemany), for the reason of _values_insert."""
    sets = ", ".join(f"{table.c[c].name} = ?" for c in columns)
    return f"UPDATE {table.name} SET {sets} WHERE {table.c[key].name} = ?"  # noqa: S608


# SQLAlchemy's storage format for SQLite DATETIME is "%Y-%m-%d %H:%M:%S.%f": an ISO time with a space, cut before
# the offset (isoformat writes it twice as fast as strftime).
SQLITE_DATETIME_LENGTH = len("2026-01-01 00:00:00.000000")


# Parameters one SQLite statement may bind (SQLITE_MAX_VARIABLE_NUMBER's default since 3.32).
SQLITE_PARAMETERS = 32766


@functools.lru_cache(maxsize=8192)
def _sqlite_time(value: datetime) -> str:
    """A datetime as SQLAlchemy stores one in SQLite (UTC, always with microseconds), so that the text compares
    and reads back the same whichever way the row was written. Cached: a delivery's times recur in its event's row,
    its record's and its statistics', and writing an aware time out costs as much as ten lookups."""
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:SQLITE_DATETIME_LENGTH]


@functools.cache
def _sqlite_conversions(table: Table, columns: tuple[str, ...]) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    """Which of `columns` SQLite is given as text: times (as SQLAlchemy stores them) and JSON documents."""
    found: list[tuple[int, Callable[[Any], Any]]] = []
    for i, column in enumerate(columns):
        kind = table.c[column].type
        if isinstance(kind, DateTime | UTCDateTime):
            found.append((i, _sqlite_time))
        elif isinstance(kind, JSON):
            found.append((i, _json_text))
    return tuple(found)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _sqlite_rows(table: Table, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Each row's values of `columns`, in order, as sqlite3 binds them (None stays NULL)."""
    conversions = _sqlite_conversions(table, columns)
    getter = operator.itemgetter(*columns)  # a tuple of the values, but of one column its value alone
    values: Callable[[dict[str, Any]], tuple[Any, ...]] = getter if len(columns) > 1 else lambda row: (getter(row),)
    if not conversions:
        return list(map(values, rows))
    bound = []
    for row in rows:
        converted = list(values(row))
        for i, convert in conversions:
            if converted[i] is not None:
                converted[i] = convert(converted[i])
        bound.append(tuple(converted))
    return bound


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
        to the stored ones; no key = a conflict raises IntegrityError. SQLAlchemy's work per value is left out (on
        SQLite it was a third of feedback's CPU): PostgreSQL gets the rows as one JSON document (_json_insert), whose
        statement text stays the same size however many rows there are; SQLite gets them as parameters the driver
        binds natively (_values_insert).
        """
        if not rows:
            return []
        columns, shape = tuple(rows[0]), (tuple(key), tuple(add), returning)
        if not self.is_sqlite:
            statement = _json_insert(self.engine.dialect, table, columns, *shape)
            result = await session.execute(statement, {"rows": orjson.dumps(rows).decode()})
            return list(result.scalars()) if returning else []
        connection = await session.connection()
        returned: list[Any] = []
        step = SQLITE_PARAMETERS // len(columns)
        for start in range(0, len(rows), step):
            part = _sqlite_rows(table, rows[start : start + step], columns)
            sql = _values_insert(table, columns, *shape, len(part))
            result = await connection.exec_driver_sql(sql, tuple(itertools.chain.from_iterable(part)))
            returned += result.scalars() if returning else []
        return returned

    async def update_rows(self, session: AsyncSession, table: Table, rows: list[dict[str, Any]], *, key: str) -> None:
        """Set each row's columns on the stored row of the same `key`, in one statement per set of columns (as
        insert_rows). The rows to change must be locked already (SELECT ... FOR UPDATE, in key order): the statement
        visits them in no particular order."""
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            shapes.setdefault(tuple(c for c in row if c != key), []).append(row)
        for columns, alike in shapes.items():
            if self.is_sqlite:
                connection = await session.connection()
                await connection.exec_driver_sql(
                    _values_update(table, columns, key), _sqlite_rows(table, alike, (*columns, key))
                )
            else:
                statement = _json_update(self.engine.dialect, table, columns, key)
                await session.execute(statement, {"rows": orjson.dumps(alike).decode()})

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


# A PostgreSQL connection back in the pool longer than this is pinged (SELECT 1) before it is used again.
PING_AFTER_IDLE = 2.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection only when it sat idle: long enough for the server to have restarted or a firewall
    to have dropped it. SQLAlchemy's pool_pre_ping pings on every checkout: a round trip more for every session
    (a batch's reads and writes are several), on the critical pipeline's path too. A connection
    that breaks between two uses a moment apart fails that one use, which the pool then replaces with every
    connection it held (a disconnect invalidates them all): a consumer's batch is redelivered, a call is answered
    UNAVAILABLE (herald/libs/errors.py)."""
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def returned(_: Any, record: Any) -> None:
        record.info["returned"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def check(dbapi_connection: Any, record: Any, __: Any) -> None:
        returned = record.info.get("returned")  # none: a connection just made
        if returned is None or time.monotonic() - returned <= PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as e:
            raise DisconnectionError("a pooled connection did not answer its ping") from e


def _create_engine(url: str, pool_size: int) -> AsyncEngine:
    # hide_parameters: a database error's text, which is logged, must not carry the statement's values -
    # rendered content, addresses, tokens.
    if not url.startswith("sqlite"):
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=BURST_CONNECTIONS, hide_parameters=True)
        _ping_when_idle(engine)
        return engine
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
