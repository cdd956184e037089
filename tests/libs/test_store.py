"""The store base on both backends: each service migrates its own prefixed tables, repeatably, in one database."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect

from libs.config import normalize_database_url
from libs.localmesh import SERVICES
from libs.store import Database
from services.feedback import tables as feedback_tables
from tests.helpers.databases import backends, fresh_postgres


@pytest.fixture(params=backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield normalize_database_url("", tmp_path, "shared")
    else:
        with fresh_postgres() as url:
            yield url


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
        async with db.session.begin() as session:
            session.add(
                feedback_tables.Message(
                    message_id="msg_x",
                    app_id="app_x",
                    template_id="t",
                    template_version=1,
                    category=1,
                    create_time=when,
                )
            )
        async with db.session() as session:
            row = await session.get(feedback_tables.Message, "msg_x")
        assert row is not None
        assert row.create_time == when and row.create_time.tzinfo is not None
        assert row.create_time.astimezone(UTC).hour == 12
    finally:
        await db.close()
