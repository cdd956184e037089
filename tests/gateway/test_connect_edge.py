"""herald-gateway: every public RPC of herald.v1 over the Connect protocol and gRPC-Web, with the errors an HTTP
caller reads (Connect codes and their HTTP statuses, the details kept) and CORS for the allowed origin only."""

import asyncio
import base64
import importlib
import pkgutil
import uuid

import herald.v1
import httpx
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.rpc import error_details_pb2
from herald.v1 import inbox_service_pb2
from herald.v1.admin_service_pb2 import App, GetAppRequest

from devmesh.mesh import Mesh
from tests.adapters.inbox.timeline import inbox_app, send
from tests.conftest import ADMIN_TOKEN, GATEWAY_ORIGIN
from tests.gateway.connect import call, envelope, grpc_web, next_messages, stream
from tests.helpers.client import Herald

# Every service of every file of herald.v1, as a third party's generator would find them.
PUBLIC_FILES = [
    importlib.import_module(f"herald.v1.{module.name}")
    for module in pkgutil.iter_modules(herald.v1.__path__)
    if module.name.endswith("_pb2")
]
METHODS: list[MethodDescriptor] = [
    method
    for module in PUBLIC_FILES
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]
UNIMPLEMENTED = 12


def procedure(method: MethodDescriptor) -> str:
    return f"{method.containing_service.full_name}/{method.name}"


async def test_every_public_method_answers_over_connect_json_and_grpc_web(http: httpx.AsyncClient) -> None:
    """Each method, called with an empty request and the admin token, is answered by the binary behind it: a
    Connect answer (a message, or an error body with a code herald gave) that is not unimplemented, never a bare
    404 for a path the gateway does not know; over gRPC-Web, a grpc-status other than UNIMPLEMENTED."""
    assert len(METHODS) >= 50
    for method in METHODS:
        name = procedure(method)
        if method.client_streaming or method.server_streaming:
            _, end = await stream(http, name, [{}], ADMIN_TOKEN, timeout_ms=3000)
            code = end.get("error", {}).get("code", "ok")
        else:
            answer = await call(http, name, {}, ADMIN_TOKEN)
            assert answer.body or answer.status == 200, (name, answer.status)
            code = answer.code
        assert code != "unimplemented", name
        status, _ = await grpc_web(http, name, b"", ADMIN_TOKEN)
        assert status != UNIMPLEMENTED, name


async def test_a_path_that_names_no_method_is_404(http: httpx.AsyncClient) -> None:
    answer = await call(http, "herald.v1.MessageService/Shout", {}, ADMIN_TOKEN)
    assert answer.status == 404


async def test_errors_keep_their_codes_http_statuses_and_details(
    http: httpx.AsyncClient, shared_mesh: tuple[Mesh, Herald]
) -> None:
    herald = shared_mesh[1]
    _, app = await herald.create_app(rate=1)
    key = app[0][1].removeprefix("Bearer ")
    template = await herald.create_template({"webhook": "{{ text }}"})
    send = {
        "templateId": template,
        "recipients": [{"userId": "u1", "addresses": {"webhook": "http://127.0.0.1:9/x"}}],
        "variables": {"text": "hi"},
    }

    anonymous = await call(http, "herald.v1.MessageService/Send", send)
    assert (anonymous.status, anonymous.code) == (401, "unauthenticated")

    unknown = await call(http, "herald.v1.MessageService/Send", {**send, "templateId": "no-such"}, key)
    assert (unknown.status, unknown.code) == (404, "not_found")
    assert "no-such" in unknown.body["message"]

    wrong_type = await call(http, "herald.v1.MessageService/Send", {**send, "recipients": [{"userId": 7}]}, key)
    assert (wrong_type.status, wrong_type.code) == (400, "invalid_argument")
    assert "recipients.userId" in wrong_type.bad_fields()
    misspelt = await call(http, "herald.v1.MessageService/Send", {**send, "templateID": template}, key)
    assert (misspelt.status, "templateID") == (400, next(iter(misspelt.bad_fields())))

    # A field herald itself finds wrong: its BadRequest comes through as the binary wrote it.
    empty = await call(http, "herald.v1.MessageService/Send", {"templateId": template}, key)
    assert (empty.status, empty.code) == (400, "invalid_argument")
    assert "recipients" in empty.bad_fields()

    answers = [await call(http, "herald.v1.MessageService/Send", send, key) for _ in range(3)]
    limited = [a for a in answers if a.status == 429]
    assert limited, [(a.status, a.body) for a in answers]
    assert limited[0].code == "resource_exhausted"
    assert 1 <= int(limited[0].headers["retry-after"]) <= 60
    (retry,) = [d for d in limited[0].body["details"] if d["type"] == "google.rpc.RetryInfo"]
    delay = error_details_pb2.RetryInfo.FromString(base64.b64decode(retry["value"] + "==")).retry_delay
    assert delay.ToTimedelta().total_seconds() > 0


async def test_json_in_json_out_for_an_admin_call_and_the_same_over_grpc_web(http: httpx.AsyncClient) -> None:
    name = f"shop-{uuid.uuid4().hex[:6]}"
    created = await call(
        http, "herald.v1.AdminService/CreateApp", {"name": name, "allowedChannels": ["webhook"]}, ADMIN_TOKEN
    )
    assert created.status == 200, created.body
    assert created.body["app"]["name"] == name
    assert created.body["apiKey"].startswith("hk_")

    request = GetAppRequest(app_id=created.body["app"]["appId"])
    status, reply = await grpc_web(http, "herald.v1.AdminService/GetApp", request.SerializeToString(), ADMIN_TOKEN)
    assert status == 0
    assert App.FromString(reply).name == name


@pytest.mark.parametrize(("origin", "allowed"), [(GATEWAY_ORIGIN, True), ("http://elsewhere.test", False)])
async def test_browsers_of_the_allowed_origin_only(http: httpx.AsyncClient, origin: str, allowed: bool) -> None:
    preflight = await http.options(
        "/herald.v1.InboxService/Sync",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    answer = await call(http, "herald.v1.InboxService/Sync", {}, origin=origin)
    if allowed:
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == origin
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        assert answer.headers["access-control-allow-origin"] == origin
    else:
        assert preflight.status_code == 403
        assert "access-control-allow-origin" not in preflight.headers
        assert "access-control-allow-origin" not in answer.headers


async def test_a_live_subscription_over_connect_replays_then_streams_new_items(
    http: httpx.AsyncClient, shared_mesh: tuple[Mesh, Herald]
) -> None:
    """A device's Subscribe through the gateway, with an inbox token: what it missed first, then each new item as
    it is delivered."""
    herald = shared_mesh[1]
    app, template = await inbox_app(herald)
    user = f"u-{uuid.uuid4().hex[:8]}"
    minted = await herald.inbox.CreateInboxToken(inbox_service_pb2.CreateInboxTokenRequest(user_id=user), metadata=app)
    await send(herald, app, template, user, 1, 1)
    headers = {"content-type": "application/connect+json", "authorization": f"Bearer {minted.token}"}
    async with (
        asyncio.timeout(60),
        http.stream("POST", "/herald.v1.InboxService/Subscribe", content=envelope(b"{}"), headers=headers) as reply,
    ):
        assert reply.status_code == 200
        chunks, buffer = reply.aiter_bytes(), bytearray()
        [missed] = await next_messages(chunks, buffer)
        assert (missed["seq"], missed["body"]) == ("1", "item 1")
        await send(herald, app, template, user, 2, 1)
        [new] = await next_messages(chunks, buffer)
        assert (new["seq"], new["body"]) == ("2", "item 2")
