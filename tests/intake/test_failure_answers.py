"""UNAVAILABLE promises that a retry may succeed, so herald says it only for an outage. A failure that would recur
on every retry is INTERNAL with a trace id to quote, and one caller's failure is not another's."""

import asyncio
import uuid
from pathlib import Path

import grpc
import pytest
from herald.v1 import message_service_pb2 as msg
from herald.v1 import status_service_pb2
from sqlalchemy.exc import IntegrityError

from libs.config import normalize_database_url
from libs.localmesh import Mesh
from libs.store import Database
from libs.timeutil import now
from services.intake import tables
from services.intake.group_commit import GroupCommit
from tests.helpers.client import Herald, rpc_error


async def test_a_value_the_database_refuses_is_internal_with_a_trace_id_not_retry(
    shared_mesh: tuple[Mesh, Herald],
) -> None:
    mesh, herald = shared_mesh
    if not mesh.binaries["intake"].env.get("HERALD_DATABASE_URL"):
        pytest.skip("SQLite stores NUL characters; PostgreSQL's text refuses them")
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    recipient = msg.Recipient(addresses={"webhook": "https://hooks.example.com/h"})
    calls = {
        "feedback": herald.status.GetMessage(
            status_service_pb2.GetMessageRequest(message_id="msg_\x00private-words"), metadata=app
        ),
        "intake": herald.messages.Send(
            msg.SendRequest(template_id=template, recipients=[recipient], idempotency_key="key-\x00private-words"),
            metadata=app,
        ),
    }
    for service, call in calls.items():
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.INTERNAL, (service, error.code(), error.details())
        assert "trace id" in (error.details() or ""), service
    sent = await herald.messages.Send(msg.SendRequest(template_id=template, recipients=[recipient]), metadata=app)
    assert sent.message_id, "the process stays up and serves the next caller"
    for service in calls:
        log = mesh.binaries[service].log_path.read_text()
        assert "DataError" in log, f"{service} logged the failure"
        assert "private-words" not in log, f"{service} logged the statement's values"


def _row(message_id: str) -> tables.Message:
    return tables.Message(
        message_id=message_id,
        app_id="app",
        template_id="t",
        template_version=1,
        payload=b"",
        create_time=now(),
        idempotency_key=None,
    )


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
                assert await session.get(tables.Message, row.message_id) is not None
    finally:
        await db.close()
