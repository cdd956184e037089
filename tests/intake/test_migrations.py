"""Upgrading a database made by an earlier intake keeps every app and its working key."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from herald.libs.config import normalize_database_url
from herald.libs.store import SERVICES_DIR
from tests.helpers.databases import backends, fresh_postgres


@pytest.fixture(params=backends())
def sync_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield normalize_database_url("", tmp_path, "intake").replace("+aiosqlite", "")
    else:
        with fresh_postgres() as url:
            yield url


def _upgrade(url: str, revision: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(SERVICES_DIR / "intake" / "migrations"))
        cfg.attributes["connection"] = conn
        cfg.attributes["service"] = "intake"
        command.upgrade(cfg, revision)
    engine.dispose()


def test_keys_move_to_their_own_table(sync_url: str) -> None:
    _upgrade(sync_url, "0001")
    engine = create_engine(sync_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO intake_apps (app_id, name, key_hash, allowed_channels, rate_limit_per_second, create_time)"
                " VALUES ('app_1', 'old', :h, '[\"webhook\"]', 0, CURRENT_TIMESTAMP)"
            ),
            {"h": "a" * 64},
        )
    _upgrade(sync_url, "head")
    with engine.connect() as conn:
        keys = conn.execute(text("SELECT key_hash, app_id, expire_time FROM intake_app_keys")).all()
        app = conn.execute(text("SELECT disabled, allowed_categories FROM intake_apps")).one()
    engine.dispose()
    assert [tuple(k) for k in keys] == [("a" * 64, "app_1", None)]
    assert not app.disabled
    assert app.allowed_categories in ("[]", [])
