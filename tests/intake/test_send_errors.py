"""Bad input gets a precise gRPC status naming the field, never UNKNOWN or INTERNAL, and the process stays up.

Which field each malformed Send is refused for is intake's decision, tested in one process (test_acceptance.py);
here, that the refusals reach a caller as statuses with their fields, from a running intake."""

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from herald.v1 import admin_service_pb2, common_pb2
from herald.v1 import message_service_pb2 as msg

from devmesh.mesh import Mesh
from tests.helpers.client import Herald, Metadata, bad_fields, bearer, rpc_error
from tests.helpers.requests import send_request


@pytest.fixture(scope="module")
async def sender(herald: Herald) -> tuple[Metadata, str]:
    _, app = await herald.create_app(("webhook",))
    template = await herald.create_template({"webhook": "code {{ code }}", "email": "code {{ code }}"})
    return app, template


def _request(template: str, **changes: object) -> msg.SendRequest:
    return send_request(template, True, **changes)


async def test_no_key_is_unauthenticated(herald: Herald, sender: tuple[Metadata, str]) -> None:
    error = await rpc_error(herald.messages.Send(_request(sender[1])))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in (error.details() or "")


async def test_unknown_key_is_unauthenticated(herald: Herald, sender: tuple[Metadata, str]) -> None:
    error = await rpc_error(herald.messages.Send(_request(sender[1]), metadata=bearer("hk_not-a-key")))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_admin_calls_need_the_admin_token(herald: Herald, sender: tuple[Metadata, str]) -> None:
    app, _ = sender
    request = admin_service_pb2.CreateAppRequest(name="sneaky")
    assert (await rpc_error(herald.admin_stub.CreateApp(request))).code() == grpc.StatusCode.UNAUTHENTICATED
    assert (
        await rpc_error(herald.admin_stub.CreateApp(request, metadata=app))
    ).code() == grpc.StatusCode.UNAUTHENTICATED


async def test_unknown_template_is_not_found(herald: Herald, sender: tuple[Metadata, str]) -> None:
    error = await rpc_error(herald.messages.Send(_request("no-such-template"), metadata=sender[0]))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-template" in (error.details() or "")


async def test_missing_variable_names_the_field_and_the_variable(herald: Herald, sender: tuple[Metadata, str]) -> None:
    app, template = sender
    error = await rpc_error(herald.messages.Send(_request(template, variables={}), metadata=app))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = bad_fields(error)
    assert "variables" in fields and "'code'" in fields["variables"]


async def test_bad_template_is_rejected_field_by_field(herald: Herald) -> None:
    request = admin_service_pb2.CreateTemplateRequest(
        template=admin_service_pb2.Template(
            template_id="Bad Id!",
            contents=[common_pb2.ChannelContent(channel="webhook", body="{{ unclosed")],
        )
    )
    error = await rpc_error(herald.admin_stub.CreateTemplate(request, metadata=herald.admin))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = bad_fields(error)
    assert {"template.template_id", "template.category", "template.contents[0].body"} <= fields.keys()


async def test_duplicate_template_id_already_exists(herald: Herald) -> None:
    template = await herald.create_template({"webhook": "x"})
    request = admin_service_pb2.CreateTemplateRequest(
        template=admin_service_pb2.Template(
            template_id=template,
            category=common_pb2.CATEGORY_NOTIFICATION,
            contents=[common_pb2.ChannelContent(channel="webhook", body="y")],
        )
    )
    error = await rpc_error(herald.admin_stub.CreateTemplate(request, metadata=herald.admin))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_processes_stay_up_and_serving_after_bad_input(
    shared_mesh: tuple[Mesh, Herald], sender: tuple[Metadata, str]
) -> None:
    mesh, herald = shared_mesh
    app, template = sender
    for _ in range(20):
        await rpc_error(herald.messages.Send(_request(template, variables={}), metadata=app))
    assert all(b.running for b in mesh.binaries.values())
    async with grpc.aio.insecure_channel(mesh.addr("intake")) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    accepted = await herald.messages.Send(_request(template), metadata=app)
    assert accepted.message_id == ""  # dry run: validated, nothing queued
