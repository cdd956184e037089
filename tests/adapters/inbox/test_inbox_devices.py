"""The inbox as devices use it: inbox tokens for one user, reading and deleting reflected on every device,
unread counts, and the delivery's timeline (SENT when stored, DELIVERED when a device got it, READ)."""

import asyncio
import uuid

import grpc
import pytest
from google.protobuf import duration_pb2
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import common_pb2
from herald.v1 import inbox_service_pb2 as pb

from herald.libs.auth import CACHE_SECONDS
from tests.adapters.inbox.timeline import inbox_app, send, wait_for_items
from tests.helpers.client import Herald, Metadata, bad_fields, bearer, rpc_error

S = common_pb2


async def _device(herald: Herald, app: Metadata, user_id: str, seconds: int = 600) -> Metadata:
    """What a device of `user_id` holds: an inbox token its app's backend minted."""
    minted = await herald.inbox.CreateInboxToken(
        pb.CreateInboxTokenRequest(user_id=user_id, ttl=duration_pb2.Duration(seconds=seconds)), metadata=app
    )
    assert minted.token.startswith("hit_")
    return bearer(minted.token)


async def test_reading_on_one_device_shows_on_the_other_and_in_the_timeline(herald: Herald) -> None:
    app, template = await inbox_app(herald)
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    phone, laptop = await _device(herald, app, user_id), await _device(herald, app, user_id)
    laptop_stream = herald.inbox.Subscribe(pb.SubscribeRequest(), metadata=laptop)
    await send(herald, app, template, user_id, 0, 3)
    first = [await asyncio.wait_for(laptop_stream.read(), 30) for _ in range(3)]
    assert [(i.seq, i.read) for i in first] == [(1, False), (2, False), (3, False)]

    page = await herald.inbox.Sync(pb.SyncRequest(), metadata=phone)
    assert page.max_seq == 3 and page.unread_count == 3
    marked = await herald.inbox.MarkRead(pb.MarkReadRequest(seqs=[2]), metadata=phone)
    assert (marked.marked_count, marked.unread_count) == (1, 2)

    again = await asyncio.wait_for(laptop_stream.read(), 10)
    assert (again.seq, again.read, again.body) == (2, True, first[1].body)
    deleted = await herald.inbox.DeleteItems(pb.DeleteItemsRequest(seqs=[3]), metadata=phone)
    assert deleted.deleted_count == 1
    gone = await asyncio.wait_for(laptop_stream.read(), 10)
    assert (gone.seq, gone.deleted, gone.body) == (3, True, "")
    laptop_stream.cancel()

    tombstoned = await herald.inbox.Sync(pb.SyncRequest(after_seq=0), metadata=laptop)
    assert [(i.seq, i.read, i.deleted) for i in tombstoned.items] == [
        (1, False, False),
        (2, True, False),
        (3, False, True),
    ]
    assert tombstoned.unread_count == 1
    assert (await herald.inbox.MarkRead(pb.MarkReadRequest(up_to_seq=3), metadata=laptop)).unread_count == 0

    message = await herald.wait_message(
        app,
        first[1].message_id,
        lambda m: any(d.state == S.DELIVERY_STATE_READ for d in m.deliveries),
    )
    states = [h.state for h in message.deliveries[0].history]
    assert states[-3:] == [S.DELIVERY_STATE_SENT, S.DELIVERY_STATE_DELIVERED, S.DELIVERY_STATE_READ]


async def test_an_app_reads_only_its_own_users_and_a_token_only_its_user(herald: Herald) -> None:
    app, template = await inbox_app(herald)
    other_app, _ = await inbox_app(herald)
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    await send(herald, app, template, user_id, 0, 2)
    await wait_for_items(herald, app, user_id, 2)

    # Another app's view of the same user id is that app's own, empty timeline.
    theirs = await herald.inbox.Sync(pb.SyncRequest(user_id=user_id), metadata=other_app)
    assert (list(theirs.items), theirs.max_seq) == ([], 0)
    device = await _device(herald, app, user_id)
    error = await rpc_error(herald.inbox.Sync(pb.SyncRequest(user_id="someone-else"), metadata=device))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await rpc_error(herald.inbox.CreateInboxToken(pb.CreateInboxTokenRequest(user_id=user_id), metadata=device))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    token = device[0][1].removeprefix("Bearer ")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    error = await rpc_error(herald.inbox.Sync(pb.SyncRequest(), metadata=bearer(forged)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    expired = await _device(herald, app, user_id, seconds=1)
    await asyncio.sleep(2.1)
    error = await rpc_error(herald.inbox.Sync(pb.SyncRequest(), metadata=expired))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in (error.details() or "")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.SyncRequest(user_id="u", limit=5000), "limit"),
        (pb.SyncRequest(user_id=""), "user_id"),
        (pb.MarkReadRequest(user_id="u"), "seqs"),
        (pb.SyncRequest(user_id="u", after_seq=2**64 - 1), "after_seq"),
        (pb.MarkReadRequest(user_id="u", seqs=[1, 2**64 - 1]), "seqs[1]"),
        (pb.DeleteItemsRequest(user_id="u", seqs=[2**63]), "seqs[0]"),
        (pb.CreateInboxTokenRequest(user_id="u", ttl=duration_pb2.Duration(seconds=7 * 86400)), "ttl"),
    ],
)
async def test_bad_requests_name_the_field(herald: Herald, request_: object, field: str) -> None:
    app, _ = await inbox_app(herald)
    call = {
        pb.SyncRequest: herald.inbox.Sync,
        pb.MarkReadRequest: herald.inbox.MarkRead,
        pb.DeleteItemsRequest: herald.inbox.DeleteItems,
        pb.CreateInboxTokenRequest: herald.inbox.CreateInboxToken,
    }[type(request_)]
    error = await rpc_error(call(request_, metadata=app))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_fields(error)


async def _answer(herald: Herald, device: Metadata, want: grpc.StatusCode) -> None:
    """Until a device's Sync answers `want`: app changes reach the adapters' key cache within seconds."""
    async with asyncio.timeout(CACHE_SECONDS + 15):
        while True:
            try:
                await herald.inbox.Sync(pb.SyncRequest(), metadata=device)
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as e:
                code = e.code()
            if code == want:
                return
            await asyncio.sleep(0.2)


async def test_a_devices_token_ends_with_its_app_or_the_key_that_made_it(herald: Herald) -> None:
    app_id, app = await herald.create_app(("inbox",))
    device = await _device(herald, app, f"u-{uuid.uuid4().hex[:8]}")
    await _answer(herald, device, grpc.StatusCode.OK)

    await herald.admin_stub.DisableApp(admin.DisableAppRequest(app_id=app_id), metadata=herald.admin)
    await _answer(herald, device, grpc.StatusCode.PERMISSION_DENIED)
    await herald.admin_stub.EnableApp(admin.EnableAppRequest(app_id=app_id), metadata=herald.admin)
    await _answer(herald, device, grpc.StatusCode.OK)

    rotated = await herald.admin_stub.RotateAppKey(
        admin.RotateAppKeyRequest(app_id=app_id, grace_period=duration_pb2.Duration(seconds=0)), metadata=herald.admin
    )
    await _answer(herald, device, grpc.StatusCode.UNAUTHENTICATED)
    fresh = await _device(herald, bearer(rotated.api_key), "someone-else")
    await _answer(herald, fresh, grpc.StatusCode.OK)
