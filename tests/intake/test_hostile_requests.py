"""Malformed and hostile requests at a running intake: never UNKNOWN or INTERNAL, and the process stays up."""

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import timestamp_pb2
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

text = st.one_of(
    st.text(max_size=40),
    # Long values cost the generator nothing: the size is what is being tested, not the characters.
    st.integers(min_value=201, max_value=6000).map(lambda n: "é" * n),
    st.sampled_from(["", "webhook", "sms", "../../etc", "\x00", "a" * 300]),
)
channels = st.one_of(st.sampled_from(["webhook", "email", "sms", "inbox", "WEBHOOK", "pigeon", ""]), text)
timestamps = st.builds(
    timestamp_pb2.Timestamp,
    seconds=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    nanos=st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
recipients = st.builds(
    msg.Recipient,
    user_id=text,
    addresses=st.dictionaries(channels, text, max_size=4),
    variables=st.dictionaries(text, text, max_size=4),
    locale=text,
)


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
@given(
    template_id=st.one_of(st.just("fuzz-target"), text),
    recipients=st.lists(recipients, max_size=5),
    variables=st.dictionaries(text, text, max_size=5),
    channel_list=st.lists(channels, max_size=4),
    send_at=st.one_of(st.none(), timestamps),
    expire_at=st.one_of(st.none(), timestamps),
    idempotency_key=text,
)
def test_malformed_sends_get_precise_statuses(
    intake: tuple[grpc.Channel, tuple[tuple[str, str], ...], str],
    template_id: str,
    recipients: list[msg.Recipient],
    variables: dict[str, str],
    channel_list: list[str],
    send_at: timestamp_pb2.Timestamp | None,
    expire_at: timestamp_pb2.Timestamp | None,
    idempotency_key: str,
) -> None:
    channel, key, _ = intake
    request = msg.SendRequest(
        template_id=template_id,
        recipients=recipients,
        variables=variables,
        channels=channel_list,
        idempotency_key=idempotency_key,
        dry_run=True,
    )
    if send_at is not None:
        request.send_at.CopyFrom(send_at)
    if expire_at is not None:
        request.expire_at.CopyFrom(expire_at)
    stub = message_service_pb2_grpc.MessageServiceStub(channel)
    assert _code(stub.Send, request, key) not in FORBIDDEN
    assert _code(stub.SendBatch, msg.SendBatchRequest(requests=[request, request]), key) not in FORBIDDEN


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
