"""Operators sign in through the company's OpenID Connect provider (a test one on loopback): for every RPC of every
service, each role gets exactly what herald/libs/roles.py's table says; tokens that are expired, signed by another
key, issued by another issuer or for another audience are UNAUTHENTICATED; the provider's key rotation is picked up
without a restart, and forged key ids do not make herald hammer the provider."""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from herald.v1 import admin_service_pb2, status_service_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import topic_service_pb2 as topic_pb2
from typer.testing import CliRunner

from herald.libs.oidc import REFETCH_SECONDS
from herald.libs.roles import OPERATOR, ROLES, RULES, SUPPORT
from herald.services.gateway.procedures import Procedure, procedures
from herald.tools.heraldctl.main import cli
from tests.e2e.conftest import SignedIn
from tests.helpers.client import all_final, bad_fields, rpc_error
from tests.helpers.oidc_provider import SigningKey
from tests.helpers.webhook_sink import WebhookSink

REFUSED = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}


async def _call(channel: grpc.aio.Channel, procedure: Procedure, token: str) -> grpc.StatusCode:
    """The procedure called with an empty request (or stream) and the token: the status it ends with."""
    method = procedure.method
    path = procedure.path
    metadata = (("authorization", f"Bearer {token}"),)
    codec: dict[str, Any] = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": procedure.output.FromString,
    }
    try:
        if method.client_streaming:

            async def nothing() -> AsyncIterator[Any]:
                for _ in ():
                    yield procedure.input()

            await channel.stream_unary(path, **codec)(nothing(), metadata=metadata, timeout=30)
        elif method.server_streaming:
            async for _ in channel.unary_stream(path, **codec)(procedure.input(), metadata=metadata, timeout=3):
                pass
        else:
            await channel.unary_unary(path, **codec)(procedure.input(), metadata=metadata, timeout=30)
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def test_each_role_gets_exactly_what_the_table_says(signed_in: SignedIn) -> None:
    provider, mesh, _ = signed_in
    every = list(procedures())
    channels = {binary: grpc.aio.insecure_channel(mesh.addr(binary)) for binary in {p.binary for p in every}}
    wrong: list[str] = []
    try:
        for procedure in every:
            name = procedure.path.lstrip("/")
            for role in (*ROLES, "herald.nobody"):
                code = await _call(channels[procedure.binary], procedure, provider.token([role]))
                allowed = role in RULES[name].roles
                # A live Subscribe ends only at its deadline: answered all the same.
                answered = code not in REFUSED and code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
                if allowed != answered or (not allowed and code != grpc.StatusCode.PERMISSION_DENIED):
                    wrong.append(f"{name} as {role}: {code.name}")
    finally:
        for channel in channels.values():
            await channel.close()
    assert wrong == []


async def test_support_reads_any_apps_message_and_changes_nothing(signed_in: SignedIn, sink: WebhookSink) -> None:
    provider, _, herald = signed_in
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    message_id = await herald.send(
        app, msg.SendRequest(template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url("/sup")})])
    )
    await herald.wait_message(app, message_id, all_final)
    support = (("authorization", f"Bearer {provider.token([SUPPORT], subject='sam@example.com')}"),)
    seen = await herald.status.GetMessage(status_service_pb2.GetMessageRequest(message_id=message_id), metadata=support)
    assert seen.delivery_count == 1 and seen.template_id == template
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await herald.admin_stub.CreateApp(admin_service_pb2.CreateAppRequest(name="x"), metadata=support)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "sam@example.com" in (refused.value.details() or "")


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
        pytest.param({"iss": "https://elsewhere.example"}, id="wrong-issuer"),
        pytest.param({"aud": "another-service"}, id="wrong-audience"),
    ],
)
async def test_a_token_herald_should_not_trust_is_unauthenticated(signed_in: SignedIn, claims: dict[str, Any]) -> None:
    provider, _, herald = signed_in
    token = provider.token(list(ROLES), **claims)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await herald.admin_stub.ListApps(
            admin_service_pb2.ListAppsRequest(), metadata=(("authorization", f"Bearer {token}"),)
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_foreign_signature_is_unauthenticated_and_a_rotation_is_picked_up(signed_in: SignedIn) -> None:
    provider, _, herald = signed_in

    async def list_apps(token: str) -> grpc.StatusCode:
        try:
            await herald.admin_stub.ListApps(
                admin_service_pb2.ListAppsRequest(), metadata=(("authorization", f"Bearer {token}"),)
            )
        except grpc.aio.AioRpcError as e:
            return e.code()
        return grpc.StatusCode.OK

    assert await list_apps(provider.token(["herald.operator"])) == grpc.StatusCode.OK
    forger = SigningKey()
    forger.kid = provider.key.kid  # the provider's key id on someone else's key
    assert await list_apps(provider.token(["herald.admin"], key=forger)) == grpc.StatusCode.UNAUTHENTICATED

    # Tokens naming key ids the provider never published: at most one fetch of its keys for them all.
    fetches = provider.jwks_fetches
    for _ in range(10):
        assert await list_apps(provider.token(["herald.admin"], key=SigningKey())) == grpc.StatusCode.UNAUTHENTICATED
    assert provider.jwks_fetches - fetches <= 1

    provider.rotate()
    await asyncio.sleep(REFETCH_SECONDS)  # the last fetch may have been just now
    assert await list_apps(provider.token(["herald.operator"])) == grpc.StatusCode.OK, "no restart needed"


async def test_heraldctl_signs_in_with_a_token_from_the_environment_or_a_file(
    signed_in: SignedIn, tmp_path: Path
) -> None:
    provider, mesh, _ = signed_in
    runner = CliRunner()
    where = {"HERALD_INTAKE_ADDR": mesh.addr("intake"), "HERALD_ADMIN_TOKEN": "", "COLUMNS": "250"}
    token_file = tmp_path / "token"
    token_file.write_text(provider.token([OPERATOR], subject="olga@example.com") + "\n")

    made = runner.invoke(cli, ["apps", "create", "ops-made"], env={**where, "HERALD_TOKEN_FILE": str(token_file)})
    assert made.exit_code == 0, made.output
    support = {**where, "HERALD_TOKEN": provider.token([SUPPORT])}
    assert "ops-made" in runner.invoke(cli, ["apps", "list"], env=support).output
    refused = runner.invoke(cli, ["apps", "create", "support-made"], env=support)
    assert refused.exit_code == 1 and "PERMISSION_DENIED" in refused.output


async def test_an_operator_manages_an_apps_topics_by_naming_the_app(signed_in: SignedIn) -> None:
    provider, _, herald = signed_in
    app_id, app = await herald.create_app()
    other_id, _ = await herald.create_app()
    operator = (("authorization", f"Bearer {provider.token([OPERATOR])}"),)
    topic = topic_pb2.Topic(topic_key="launch", name="Launch news")
    await herald.topics.CreateTopic(topic_pb2.CreateTopicRequest(topic=topic, app_id=app_id), metadata=operator)

    async def chunks() -> AsyncIterator[topic_pb2.AddSubscribersRequest]:
        yield topic_pb2.AddSubscribersRequest(app_id=app_id, topic_key="launch", user_ids=["u1", "u2"])
        yield topic_pb2.AddSubscribersRequest(user_ids=["u3"])

    added = await herald.topics.AddSubscribers(chunks(), metadata=operator)
    assert (added.added_count, added.subscriber_count) == (3, 3)
    seen_by_app = await herald.topics.ListSubscribers(
        topic_pb2.ListSubscribersRequest(topic_key="launch"), metadata=app
    )
    assert list(seen_by_app.user_ids) == ["u1", "u2", "u3"], "the app's own topic, made by an operator"

    unnamed = await rpc_error(herald.topics.ListTopics(topic_pb2.ListTopicsRequest(), metadata=operator))
    assert unnamed.code() == grpc.StatusCode.INVALID_ARGUMENT and "app_id" in bad_fields(unnamed)
    foreign = await rpc_error(herald.topics.ListTopics(topic_pb2.ListTopicsRequest(app_id=other_id), metadata=app))
    assert foreign.code() == grpc.StatusCode.PERMISSION_DENIED
