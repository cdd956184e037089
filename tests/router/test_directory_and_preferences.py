"""The directory (get, delete, bulk import) and opt-outs: honoured for notification and marketing, never for
critical, and announced on herald.event.unsubscribed for the member system."""

import uuid
from collections.abc import AsyncIterator

import grpc
import nats
import pytest
from herald.v1 import common_pb2, events_pb2
from herald.v1 import directory_service_pb2 as directory
from herald.v1 import message_service_pb2 as msg

from devmesh.mesh import Mesh
from tests.helpers.client import Herald, all_final, bad_fields, rpc_error
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


async def _user(herald: Herald, sink: WebhookSink) -> tuple[str, str]:
    user_id, path = f"u-{uuid.uuid4().hex[:8]}", f"/prefs/{uuid.uuid4().hex[:8]}"
    await herald.directory.UpsertUser(
        directory.UpsertUserRequest(user=directory.User(user_id=user_id, addresses={"webhook": sink.url(path)})),
        metadata=herald.admin,
    )
    return user_id, path


async def _deliver(
    herald: Herald, user_id: str, category: common_pb2.Category.ValueType
) -> common_pb2.DeliveryState.ValueType:
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"}, category)
    message_id = await herald.send(
        app, msg.SendRequest(template_id=template, recipients=[msg.Recipient(user_id=user_id)])
    )
    message = await herald.wait_message(app, message_id, all_final)
    return message.deliveries[0].state


async def _prefer(
    herald: Herald, user_id: str, category: common_pb2.Category.ValueType, channel: str, out: bool
) -> None:
    await herald.directory.SetPreference(
        directory.SetPreferenceRequest(user_id=user_id, category=category, channel=channel, opted_out=out),
        metadata=herald.admin,
    )


async def test_opt_out_suppresses_marketing_but_not_notifications_or_critical(
    herald: Herald, sink: WebhookSink
) -> None:
    user_id, _ = await _user(herald, sink)
    await _prefer(herald, user_id, S.CATEGORY_MARKETING, "", True)
    assert await _deliver(herald, user_id, S.CATEGORY_MARKETING) == S.DELIVERY_STATE_SUPPRESSED
    assert await _deliver(herald, user_id, S.CATEGORY_NOTIFICATION) == S.DELIVERY_STATE_SENT
    assert await _deliver(herald, user_id, S.CATEGORY_CRITICAL) == S.DELIVERY_STATE_SENT

    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"}, S.CATEGORY_MARKETING)
    message_id = await herald.send(
        app, msg.SendRequest(template_id=template, recipients=[msg.Recipient(user_id=user_id)])
    )
    [delivery] = (await herald.wait_message(app, message_id, all_final)).deliveries
    assert delivery.reason == f"user '{user_id}' opted out of marketing messages on every channel"


async def test_a_channels_own_preference_wins_over_every_channel(herald: Herald, sink: WebhookSink) -> None:
    user_id, _ = await _user(herald, sink)
    await _prefer(herald, user_id, S.CATEGORY_MARKETING, "", True)
    await _prefer(herald, user_id, S.CATEGORY_MARKETING, "webhook", False)
    assert await _deliver(herald, user_id, S.CATEGORY_MARKETING) == S.DELIVERY_STATE_SENT
    user = await herald.directory.GetUser(directory.GetUserRequest(user_id=user_id), metadata=herald.admin)
    assert [(p.channel, p.opted_out) for p in user.preferences] == [("", True), ("webhook", False)]


async def test_critical_cannot_be_opted_out_of(herald: Herald) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _prefer(herald, "someone", S.CATEGORY_CRITICAL, "", True)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "critical" in (err.value.details() or "")


async def test_an_opt_out_is_announced_for_the_member_system(shared_mesh: tuple[Mesh, Herald]) -> None:
    mesh, herald = shared_mesh
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(mesh.nats_url)
    try:
        sub = await nc.jetstream().subscribe("herald.event.unsubscribed", ordered_consumer=True)
        await _prefer(herald, user_id, S.CATEGORY_MARKETING, "sms", True)
        async for raw in sub.messages:
            event = events_pb2.PreferenceEvent.FromString(raw.data)
            if event.user_id == user_id:
                break
    finally:
        await nc.close()
    assert (event.category, event.channel, event.opted_out) == (S.CATEGORY_MARKETING, "sms", True)


async def test_delete_erases_the_user(herald: Herald, sink: WebhookSink) -> None:
    user_id, _ = await _user(herald, sink)
    await _prefer(herald, user_id, S.CATEGORY_MARKETING, "", True)
    await herald.directory.DeleteUser(directory.DeleteUserRequest(user_id=user_id), metadata=herald.admin)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await herald.directory.GetUser(directory.GetUserRequest(user_id=user_id), metadata=herald.admin)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert await _deliver(herald, user_id, S.CATEGORY_NOTIFICATION) == S.DELIVERY_STATE_SUPPRESSED


async def test_bulk_import_keeps_chunks_before_an_invalid_user(herald: Herald) -> None:
    prefix = f"imp-{uuid.uuid4().hex[:6]}"

    async def chunks(bad_at: int | None) -> AsyncIterator[directory.ImportUsersRequest]:
        for start in range(0, 2500, 1000):
            users = [
                directory.User(user_id=f"{prefix}-{i}", addresses={"sms": f"+86138{i:08d}"}, timezone="Asia/Shanghai")
                for i in range(start, min(start + 1000, 2500))
            ]
            if bad_at is not None and start <= bad_at < start + 1000:
                users[bad_at - start].timezone = "Mars/Olympus"
            yield directory.ImportUsersRequest(users=users)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await herald.directory.ImportUsers(chunks(1500), metadata=herald.admin)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "users[1500].timezone" in (err.value.details() or "")
    kept = await herald.directory.GetUser(directory.GetUserRequest(user_id=f"{prefix}-999"), metadata=herald.admin)
    assert kept.addresses["sms"] == "+8613800000999"

    reply = await herald.directory.ImportUsers(chunks(None), metadata=herald.admin)
    assert reply.imported == 2500
    last = await herald.directory.GetUser(directory.GetUserRequest(user_id=f"{prefix}-2499"), metadata=herald.admin)
    assert last.timezone == "Asia/Shanghai"


async def test_each_message_of_a_batch_gets_its_own_users_directory_entry_and_preferences(
    herald: Herald, sink: WebhookSink
) -> None:
    """The router reads a fetched batch's users in one go; every message must still see exactly its own."""
    known = [await _user(herald, sink) for _ in range(10)]
    opted_out = [(await _user(herald, sink))[0] for _ in range(10)]
    for user_id in opted_out:
        await _prefer(herald, user_id, S.CATEGORY_NOTIFICATION, "webhook", True)
    unknown = [f"nobody-{uuid.uuid4().hex[:8]}" for _ in range(10)]
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    entries = [
        msg.SendRequest(template_id=template, recipients=[msg.Recipient(user_id=user_id)])
        for trio in zip([u for u, _ in known], opted_out, unknown, strict=True)
        for user_id in trio
    ]
    reply = await herald.messages.SendBatch(msg.SendBatchRequest(requests=entries), metadata=app)
    outcomes = {}
    for entry, result in zip(entries, reply.results, strict=True):
        message = await herald.wait_message(app, result.response.message_id, all_final)
        [delivery] = message.deliveries
        outcomes[entry.recipients[0].user_id] = (delivery.state, delivery.reason)

    for user_id, path in known:
        assert outcomes[user_id][0] == S.DELIVERY_STATE_SENT, outcomes[user_id]
        assert len(await sink.wait_for(path)) == 1
    for user_id in opted_out:
        assert outcomes[user_id] == (
            S.DELIVERY_STATE_SUPPRESSED,
            f"user '{user_id}' opted out of notification messages on webhook",
        )
    for user_id in unknown:
        assert outcomes[user_id][0] == S.DELIVERY_STATE_SUPPRESSED
        assert f"none in the directory for user '{user_id}'" in outcomes[user_id][1]


@pytest.mark.parametrize(
    ("user", "field"),
    [
        *(
            (directory.User(user_id="u-1", addresses={"webhook": address}), "user.addresses[webhook]")
            for address in ("http://exa\\mple.com/", "http://example.com:99999/", "ftp://example.com/")
        ),
        (directory.User(user_id="u-\x00"), "user.user_id"),
        (directory.User(user_id="u-1", addresses={"email": "a\x00@example.com"}), "user.addresses[email]"),
    ],
)
async def test_the_directory_refuses_what_could_not_be_delivered_or_stored(
    herald: Herald, user: directory.User, field: str
) -> None:
    error = await rpc_error(herald.directory.UpsertUser(directory.UpsertUserRequest(user=user), metadata=herald.admin))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_fields(error)
