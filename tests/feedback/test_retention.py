"""Retention: an app's rendered content is purged from the status records once older than its retention, while
the delivery, its history and the statistics stay; newer content is untouched."""

import asyncio
import uuid
from datetime import timedelta

import grpc
from herald.v1 import admin_service_pb2, common_pb2
from herald.v1 import status_service_pb2 as pb

from libs.localmesh import Mesh
from libs.timeutil import now, to_timestamp
from tests.helpers.client import Herald, bad_fields, bearer, rpc_error
from tests.helpers.status_events import accepted, publish, status_event

S = common_pb2


async def test_content_past_the_apps_retention_is_purged_and_the_rest_kept(shared_mesh: tuple[Mesh, Herald]) -> None:
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

    old = await herald.wait_message(
        app, f"msg_{prefix}old", lambda m: len(m.deliveries) == 1 and m.deliveries[0].content == ""
    )
    assert old.deliveries[0].state == S.DELIVERY_STATE_SENT and len(old.deliveries[0].history) == 1
    new = await herald.wait_message(app, f"msg_{prefix}new", lambda m: len(m.deliveries) == 1)
    assert new.deliveries[0].content == "your new code 2468"

    async def found(words: str) -> list[str]:
        reply = await herald.status.SearchDeliveries(pb.SearchDeliveriesRequest(query=words), metadata=app)
        return [d.delivery_id for d in reply.deliveries]

    assert await found("code") == [f"{prefix}.new"]
    assert await found("7351") == []
    week = pb.GetStatsRequest(
        start_time=to_timestamp(now() - timedelta(days=7)), end_time=to_timestamp(now() + timedelta(hours=1))
    )
    async with asyncio.timeout(10):
        while not (rows := (await herald.status.GetStats(week, metadata=app)).rows):
            await asyncio.sleep(0.1)
    [row] = rows
    assert row.sent == 2  # the purged delivery still counts


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
