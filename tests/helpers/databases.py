"""Test databases: a throw-away PostgreSQL database per use when HERALD_TEST_DATABASE_URL is set, else SQLite."""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url

TEST_URL = os.environ.get("HERALD_TEST_DATABASE_URL", "")


def backends() -> list[str]:
    return ["sqlite", "postgresql"] if TEST_URL else ["sqlite"]


def default_backend() -> str:
    return "postgresql" if TEST_URL else "sqlite"


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new, empty database on the test server; dropped afterwards."""
    base = make_url(TEST_URL).set(drivername="postgresql+psycopg")
    name = f"herald_test_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_env(backend: str) -> Iterator[dict[str, str]]:
    """Environment for a mesh on `backend`: SQLite is the default (files under HERALD_DATA_DIR)."""
    if backend == "sqlite":
        yield {"HERALD_DATABASE_URL": ""}
        return
    with fresh_postgres() as url:
        yield {"HERALD_DATABASE_URL": url}
