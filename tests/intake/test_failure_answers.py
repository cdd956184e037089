"""UNAVAILABLE promises that a retry may succeed, so herald says it only for an outage. A failure that would recur
on every retry is INTERNAL with a trace id to quote, and one caller's failure is not another's."""

import asyncio
import uuid
from pathlib import Path

import grpc
import pytest
from herald.v1 import status_service_pb2
from sqlalchemy.exc import IntegrityError

from libs.config import normalize_database_url
from libs.localmesh import Mesh
from libs.store import Database
from libs.timeutil import now
from services.intake import tables
from services.intake.group_commit import GroupCommit, Row
from tests.helpers.client import Herald, rpc_error


async def test_a_value_the_database_refuses_is_internal_with_a_trace_id_not_retry(
    shared_mesh: tuple[Mesh, Herald],
) -> None:
    mesh, herald = shared_mesh
    if not mesh.binaries["feedback"].env.get("HERALD_DATABASE_URL"):
        pytest.skip("SQLite stores NUL characters; PostgreSQL's text refuses them")
    _, app = await herald.create_app()
    request = status_service_pb2.GetMessageRequest(message_id="msg_\x00private-words")
    error = await rpc_error(herald.status.GetMessage(request, metadata=app))
    assert error.code() == grpc.StatusCode.INTERNAL, (error.code(), error.details())
    assert "trace id" in (error.details() or "")
    unknown = status_service_pb2.GetMessageRequest(message_id="msg_x")
    assert (await rpc_error(herald.status.GetMessage(unknown, metadata=app))).code() == grpc.StatusCode.NOT_FOUND, (
        "feedback stays up and answers the next caller"
    )
    log = mesh.binaries["feedback"].log_path.read_text()
    assert "DataError" in log, "the failure is logged"
    assert "private-words" not in log, "the statement's values are not"


def _row(message_id: str) -> Row:
    row = {"message_id": message_id, "app_id": "app", "template_id": "t", "template_version": 1, "payload": b""}
    return row | {"create_time": now(), "idempotency_key": None}


async def test_one_callers_bad_row_fails_only_that_caller(tmp_path: Path) -> None:
    db = await Database.open(normalize_database_url("", tmp_path, "intake"), "intake")
    try:
        taken = f"msg_{uuid.uuid4().hex}"
        commits = GroupCommit(db)
        await commits.insert([_row(taken)])
        good = [_row(f"msg_{uuid.uuid4().hex}") for _ in range(3)]
        results = await asyncio.gather(
            *(commits.insert([row]) for row in good[:2]),
            commits.insert([_row(taken)]),
            commits.insert([good[2]]),
            return_exceptions=True,
        )
        assert results[:2] == [None, None] and results[3] is None, results
        assert isinstance(results[2], IntegrityError), "the duplicate is its caller's failure"
        async with db.session() as session:
            for row in good:
                assert await session.get(tables.Message, row["message_id"]) is not None
    finally:
        await db.close()
