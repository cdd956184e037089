"""Retention: an app's status records are deleted once older than its retention - message, deliveries with their
content, history - while the statistics keep counting them; newer records are untouched."""

import asyncio
import uuid
from datetime import timedelta

import grpc
from herald.v1 import admin_service_pb2, common_pb2
from herald.v1 import status_service_pb2 as pb

from devmesh.mesh import Mesh
from herald.libs.timeutil import now, to_timestamp
from tests.helpers.client import Herald, bad_fields, bearer, rpc_error
from tests.helpers.status_events import accepted, publish, status_event

S = common_pb2


async def test_records_past_the_apps_retention_are_deleted_and_the_rest_kept(shared_mesh: tuple[Mesh, Herald]) -> None:
    mesh, herald = shared_mesh
    reply = await herald.admin_stub.CreateApp(
        admin_service_pb2.CreateAppRequest(name="short-memory", content_retention_days=2), metadata=herald.admin
    )
    assert reply.app.content_retention_days == 2
    app_id, app = reply.app.app_id, bearer(reply.api_key)
    prefix = uuid.uuid4().hex[:12]
    written = {"old": (now() - timedelta(days=5), "your old code 7351"), "new": (now(), "your new code 2468")}
    for name, (when, content) in written.items():
        message_id = f"msg_{prefix}{name}"
        sent = status_event(
            f"{prefix}.{name}",
            S.DELIVERY_STATE_SENT,
            when,
            message_id=message_id,
            app_id=app_id,
            template_id="code",
            user_id="u-1",
            channel="sms",
            provider="twilio-main",
            content=content,
        )
        await publish(mesh, accepted(message_id, app_id, when), sent)

    new = await herald.wait_message(app, f"msg_{prefix}new", lambda m: len(m.deliveries) == 1)
    week = pb.GetStatsRequest(
        start_time=to_timestamp(now() - timedelta(days=7)), end_time=to_timestamp(now() + timedelta(hours=1))
    )
    async with asyncio.timeout(10):  # both are recorded (and counted)...
        while [r.sent for r in (await herald.status.GetStats(week, metadata=app)).rows] != [2]:
            await asyncio.sleep(0.1)
    async with asyncio.timeout(20):  # ...and the old one's records are deleted
        while await _found(herald, app, f"msg_{prefix}old"):
            await asyncio.sleep(0.2)
    assert new.deliveries[0].content == "your new code 2468"

    async def found(words: str) -> list[str]:
        reply = await herald.status.SearchDeliveries(pb.SearchDeliveriesRequest(query=words), metadata=app)
        return [d.delivery_id for d in reply.deliveries]

    assert await found("code") == [f"{prefix}.new"]
    assert await found("7351") == []
    [row] = (await herald.status.GetStats(week, metadata=app)).rows
    assert row.sent == 2, "the statistics still count the deleted delivery"


async def _found(herald: Herald, app: tuple[tuple[str, str], ...], message_id: str) -> bool:
    """Whether GetMessage finds the message; NOT_FOUND is the only other answer it may give."""
    try:
        await herald.status.GetMessage(pb.GetMessageRequest(message_id=message_id), metadata=app)
    except grpc.aio.AioRpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return False
    return True


async def test_retention_is_set_per_app_within_bounds(herald: Herald) -> None:
    app_id, _ = await herald.create_app()
    app = await herald.admin_stub.SetContentRetention(
        admin_service_pb2.SetContentRetentionRequest(app_id=app_id, content_retention_days=30), metadata=herald.admin
    )
    assert app.content_retention_days == 30
    fetched = await herald.admin_stub.GetApp(admin_service_pb2.GetAppRequest(app_id=app_id), metadata=herald.admin)
    assert fetched.content_retention_days == 30
    error = await rpc_error(
        herald.admin_stub.SetContentRetention(
            admin_service_pb2.SetContentRetentionRequest(app_id=app_id, content_retention_days=-1),
            metadata=herald.admin,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_fields(error)) == {"content_retention_days"}
    error = await rpc_error(
        herald.admin_stub.SetContentRetention(
            admin_service_pb2.SetContentRetentionRequest(app_id="app_missing", content_retention_days=1),
            metadata=herald.admin,
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
