"""UNAVAILABLE promises that a retry may succeed, so herald says it only for an outage. A failure that would recur
on every retry is INTERNAL with a trace id to quote."""

import grpc
import pytest
from herald.v1 import status_service_pb2

from devmesh.mesh import Mesh
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
