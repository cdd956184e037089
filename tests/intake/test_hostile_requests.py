"""Malformed and hostile requests at a running intake: never UNKNOWN or INTERNAL, and the process stays up.

Well-formed requests with hostile contents are answered by intake's checks, tested in one process
(test_hostile_sends.py); here, what reaches the gRPC server: bytes that do not parse, any bearer token."""

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import admin_service_pb2_grpc, common_pb2, message_service_pb2_grpc
from herald.v1 import message_service_pb2 as msg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devmesh.mesh import Mesh
from tests.conftest import ADMIN_TOKEN
from tests.helpers.client import Herald

FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def intake(shared_mesh: tuple[Mesh, Herald]) -> Iterator[tuple[grpc.Channel, tuple[tuple[str, str], ...], str]]:
    """A blocking channel (hypothesis drives plain functions), an app key and a real template."""
    mesh, _ = shared_mesh
    channel = grpc.insecure_channel(mesh.addr("intake"))
    auth = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
    admins = admin_service_pb2_grpc.AdminServiceStub(channel)
    key = admins.CreateApp(admin.CreateAppRequest(name="fuzz", rate_limit_per_second=0), metadata=auth).api_key
    admins.CreateTemplate(
        admin.CreateTemplateRequest(
            template=admin.Template(
                template_id="fuzz-target",
                category=common_pb2.CATEGORY_NOTIFICATION,
                contents=[common_pb2.ChannelContent(channel="webhook", body="{{ code }}")],
            )
        ),
        metadata=auth,
    )
    yield channel, (("authorization", f"Bearer {key}"),), "fuzz-target"
    channel.close()


def _code(
    call: "grpc.UnaryUnaryMultiCallable", request: object, metadata: tuple[tuple[str, str], ...]
) -> grpc.StatusCode:
    try:
        call(request, metadata=metadata, timeout=10)
    except grpc.RpcError as e:
        code: grpc.StatusCode = e.code()
        return code
    return grpc.StatusCode.OK


@SETTINGS
@given(raw=st.binary(max_size=2000), method=st.sampled_from(["Send", "SendBatch", "CancelMessage"]))
def test_arbitrary_bytes_get_precise_statuses(
    intake: tuple[grpc.Channel, tuple[tuple[str, str], ...], str], raw: bytes, method: str
) -> None:
    channel, key, _ = intake
    call = channel.unary_unary(f"/herald.v1.MessageService/{method}")
    assert _code(call, raw, key) not in FORBIDDEN


def test_bytes_that_do_not_parse_are_invalid_argument(
    intake: tuple[grpc.Channel, tuple[tuple[str, str], ...], str],
) -> None:
    channel, key, _ = intake
    call = channel.unary_unary("/herald.v1.MessageService/Send")
    assert _code(call, b"\x00", key) == grpc.StatusCode.INVALID_ARGUMENT


@SETTINGS
@given(token=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=3000))
def test_any_bearer_token_is_refused_cleanly(
    intake: tuple[grpc.Channel, tuple[tuple[str, str], ...], str], token: str
) -> None:
    channel, _, template = intake
    stub = message_service_pb2_grpc.MessageServiceStub(channel)
    request = msg.SendRequest(template_id=template, recipients=[msg.Recipient(user_id="u")], dry_run=True)
    assert _code(stub.Send, request, (("authorization", f"Bearer {token}"),)) == grpc.StatusCode.UNAUTHENTICATED


def test_intake_is_still_serving(intake: tuple[grpc.Channel, tuple[tuple[str, str], ...], str]) -> None:
    channel, _, _ = intake
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
