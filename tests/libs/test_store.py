"""The store base on both backends: each service migrates its own prefixed tables, repeatably, in one database."""

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from devmesh.mesh import SERVICES, free_port
from herald.libs import store
from herald.libs.config import normalize_database_url
from herald.libs.sqlite_connection import PREFETCH_ROWS, SqliteConnection
from herald.libs.store import SQLITE_PARAMETERS, Database
from herald.services.feedback import tables as feedback_tables
from tests.helpers.databases import TEST_URL, fresh_postgres


async def _store_message(db: Database, message_id: str, created: datetime, *more: str) -> None:
    """Store the message (and `more` after it) in one transaction, one INSERT each."""
    async with db.session.begin() as session:
        for each in (message_id, *more):
            session.add(
                feedback_tables.Message(
                    message_id=each,
                    app_id="app_x",
                    template_id="t",
                    template_version=1,
                    category=1,
                    create_time=created,
                )
            )
            await session.flush()


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_services_share_a_database_without_sharing_a_table(database_url: str) -> None:
    opened = [await Database.open(database_url, service) for service in SERVICES]
    try:
        names = await _tables(opened[0])
        for service in SERVICES:
            assert f"alembic_version_{service}" in names
        owned = {t for t in names if not t.startswith("alembic_version_")}
        assert owned, "migrations created no tables"
        for table in owned:
            assert table.split("_", 1)[0] in SERVICES, f"{table} is not prefixed with its owning service"
        again = await Database.open(database_url, "feedback")  # a second start migrates nothing twice
        assert await _tables(again) == names
        await again.close()
    finally:
        for db in opened:
            await db.close()


async def test_datetimes_come_back_aware_in_utc(database_url: str) -> None:
    db = await Database.open(database_url, "feedback")
    when = datetime(2026, 5, 1, 20, 30, tzinfo=timezone(timedelta(hours=8)))
    try:
        await _store_message(db, "msg_x", when)
        async with db.session() as session:
            row = await session.get(feedback_tables.Message, "msg_x")
        assert row is not None
        assert row.create_time == when and row.create_time.tzinfo is not None
        assert row.create_time.astimezone(UTC).hour == 12
    finally:
        await db.close()


async def test_rows_written_in_bulk_read_and_compare_as_rows_written_one_by_one(database_url: str) -> None:
    """insert_rows and update_rows write times themselves (a JSON document on PostgreSQL, bound parameters on SQLite):
    they must be stored as the ORM stores them (SQLite compares stored times as text), and read back the same."""
    db = await Database.open(database_url, "feedback")
    table = feedback_tables.Base.metadata.tables["feedback_messages"]
    base = datetime(2026, 5, 1, 20, 30, tzinfo=timezone(timedelta(hours=8)))
    times = {f"msg_t{n}": base + timedelta(microseconds=n * 250_000) for n in range(6)}
    row = {"app_id": "app_t", "template_id": "t", "template_version": 1, "category": 1, "trace_id": ""}
    try:
        for n in (0, 2, 4):
            await _store_message(db, f"msg_t{n}", times[f"msg_t{n}"])
        bulk = [row | {"message_id": m, "create_time": times[m]} for m in ("msg_t1", "msg_t3", "msg_t5")]
        async with db.session.begin() as session:
            assert await db.insert_rows(session, table, bulk, key=["message_id"], returning="message_id") == [
                "msg_t1",
                "msg_t3",
                "msg_t5",
            ]
        async with db.session() as session:
            rows = await session.scalars(
                select(feedback_tables.Message)
                .where(feedback_tables.Message.create_time > times["msg_t1"])
                .order_by(feedback_tables.Message.create_time)
            )
            assert [(r.message_id, r.create_time) for r in rows] == [(m, times[m]) for m in sorted(times)][2:]
        later = times["msg_t0"] + timedelta(days=1)
        async with db.session.begin() as session:
            changes = [{"message_id": m, "create_time": later, "template_version": 2} for m in ("msg_t0", "msg_t1")]
            await db.update_rows(session, table, changes, key="message_id")
        async with db.session() as session:
            rows = await session.scalars(
                select(feedback_tables.Message).where(feedback_tables.Message.create_time == later)
            )
            assert sorted((r.message_id, r.template_version) for r in rows) == [("msg_t0", 2), ("msg_t1", 2)]
    finally:
        await db.close()


async def test_a_bulk_insert_larger_than_one_statement_binds_is_written_and_answered_whole(database_url: str) -> None:
    """A feedback batch may hold tens of thousands of events, more values than one SQLite statement binds: every row
    is written, every new one is named in the answer, and inserting them again adds and names none. SQLite's bound
    is set to its default (32,766), which this machine's build raises: one statement for all the rows would fail."""
    db = await Database.open(database_url, "feedback")
    if db.is_sqlite:
        async with db.engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            assert isinstance(raw, SqliteConnection)
            raw.raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, SQLITE_PARAMETERS)
    table = feedback_tables.Base.metadata.tables["feedback_events"]
    at = datetime(2026, 5, 1, tzinfo=UTC)
    rows = [
        {
            "event_id": f"e{n:05d}",
            "delivery_id": f"d{n}",
            "state": 1,
            "attempt": 0,
            "reason": "",
            "provider": "",
            "occur_time": at + timedelta(seconds=n),
        }
        for n in range(10_000)
    ]
    try:
        for expected in ([r["event_id"] for r in rows], []):
            async with db.session.begin() as session:
                fresh = await db.insert_rows(session, table, rows, key=["event_id"], returning="event_id")
            assert sorted(fresh) == expected
        async with db.session() as session:
            stored = await session.scalars(select(feedback_tables.Event).order_by(feedback_tables.Event.event_id))
            assert [(e.event_id, e.occur_time) for e in stored] == [(r["event_id"], r["occur_time"]) for r in rows]
    finally:
        await db.close()


async def test_results_of_any_size_come_back_whole_in_order_read_at_once_or_streamed(database_url: str) -> None:
    """SQLite's statements bring their first rows back with them (herald/libs/sqlite_connection.py): a longer
    result is read on, whether whole, streamed a few at a time (yield_per) or left after its first row."""
    db = await Database.open(database_url, "feedback")
    table = feedback_tables.Base.metadata.tables["feedback_messages"]
    count = 3 * PREFETCH_ROWS + 7
    ids = [f"msg_r{n:04d}" for n in range(count)]
    row = {"app_id": "app_r", "template_id": "t", "template_version": 1, "category": 1, "trace_id": ""}
    query = select(feedback_tables.Message.message_id).order_by(feedback_tables.Message.message_id)
    try:
        async with db.session.begin() as session:
            await db.insert_rows(
                session, table, [row | {"message_id": m, "create_time": datetime.now(UTC)} for m in ids]
            )
        async with db.session() as session:
            assert list(await session.scalars(query)) == ids
            assert [m async for m in await session.stream_scalars(query.execution_options(yield_per=20))] == ids
            assert await session.scalar(query) == ids[0]
            assert len(list(await session.scalars(query.limit(PREFETCH_ROWS)))) == PREFETCH_ROWS
    finally:
        await db.close()


async def test_a_failed_statement_undoes_its_transaction_and_the_next_one_goes_through(database_url: str) -> None:
    db = await Database.open(database_url, "feedback")
    when = datetime.now(UTC)
    try:
        await _store_message(db, "msg_f1", when)
        with pytest.raises(IntegrityError):
            await _store_message(db, "msg_f2", when, "msg_f1")
        async with db.session() as session:
            assert await session.get(feedback_tables.Message, "msg_f2") is None
        await _store_message(db, "msg_f3", when)
        async with db.session() as session:
            assert await session.get(feedback_tables.Message, "msg_f3") is not None
    finally:
        await db.close()


@pytest.mark.skipif(not TEST_URL, reason="a PostgreSQL server (HERALD_TEST_DATABASE_URL)")
async def test_a_url_naming_several_hosts_reaches_the_one_that_accepts_writes(tmp_path: Path) -> None:
    """HERALD_DATABASE_URL as libpq writes a primary and its standbys: herald connects to whichever accepts
    writes - here the first host is down, as a failed primary is."""
    with fresh_postgres() as url:
        server = make_url(url)
        several = (
            f"postgresql://{server.username}@127.0.0.1:{free_port()},{server.host}:{server.port or 5432}"
            f"/{server.database}"
        )
        db = await Database.open(normalize_database_url(several, tmp_path, "feedback"), "feedback")
        try:
            await _store_message(db, "msg_hosts", datetime.now(UTC))
            async with db.session() as session:
                assert await session.get(feedback_tables.Message, "msg_hosts") is not None
        finally:
            await db.close()


def test_several_hosts_are_written_as_sqlalchemy_reads_them(tmp_path: Path) -> None:
    url = normalize_database_url("postgresql://u:p@primary:5432,standby:5433/herald?sslmode=require", tmp_path, "x")
    assert url == (
        "postgresql+psycopg://u:p@/herald?host=primary:5432&host=standby:5433&sslmode=require"
        "&target_session_attrs=read-write"
    )
    chosen = normalize_database_url("postgres://u@a:1,b:2/db?target_session_attrs=any", tmp_path, "x")
    assert chosen == "postgresql+psycopg://u@/db?host=a:1&host=b:2&target_session_attrs=any"
    assert normalize_database_url("postgresql://u@a:5432/db", tmp_path, "x") == "postgresql+psycopg://u@a:5432/db"


@pytest.mark.skipif(not TEST_URL, reason="PostgreSQL only: SQLite has no server to drop a connection")
async def test_a_connection_the_server_dropped_while_idle_is_replaced_unnoticed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pooled connection is pinged before use only after it sat idle (store.PING_AFTER_IDLE), not before every
    session; one the server ended meanwhile (a restart, an idle timeout, an operator) is replaced, and the caller's
    statement goes through."""
    monkeypatch.setattr(store, "PING_AFTER_IDLE", 0.2)
    with fresh_postgres() as url:
        db = await Database.open(normalize_database_url(url, tmp_path, "feedback"), "feedback")
        try:
            async with db.session() as session:
                pid = await session.scalar(text("SELECT pg_backend_pid()"))
            with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            await asyncio.sleep(0.4)
            await _store_message(db, "msg_after_drop", datetime.now(UTC))
            async with db.session() as session:
                assert await session.get(feedback_tables.Message, "msg_after_drop") is not None
                assert await session.scalar(text("SELECT pg_backend_pid()")) != pid
        finally:
            await db.close()
