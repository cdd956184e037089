"""ExplainRouting through the mesh: the router asks intake for the app and the template, and a bad request gets a
precise status (a successful answer through the mesh: test_escalation, test_digests, test_preferred_channel).
Which channels a user would get a message on now, and why not the others, is tested in one process
(test_explain_in_process.py)."""

import grpc
from herald.v1 import routing_service_pb2 as routing

from tests.helpers.client import Herald, bad_fields, rpc_error


async def test_bad_requests_get_precise_errors(herald: Herald) -> None:
    app_id, _ = await herald.create_app()
    error = await rpc_error(herald.routing.ExplainRouting(routing.ExplainRoutingRequest(), metadata=herald.admin))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_fields(error)) == {"app_id", "template_id", "user_id"}

    unknown = routing.ExplainRoutingRequest(app_id=app_id, template_id="no-such-template", user_id="u")
    error = await rpc_error(herald.routing.ExplainRouting(unknown, metadata=herald.admin))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-template" in (error.details() or "")

    error = await rpc_error(herald.routing.ExplainRouting(unknown))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
