"""Quiet hours: notification and marketing wait for the window's end in the recipient's time zone; critical does not."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import common_pb2
from herald.v1 import directory_service_pb2 as directory
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, Metadata, all_final, bearer
from tests.helpers.databases import default_backend
from tests.helpers.webhook_sink import WebhookSink

# Whole meshes started, killed or kept waiting: run first, beside the rest (tests/conftest.py).
pytestmark = pytest.mark.slow

S = common_pb2


async def _window_now() -> tuple[common_pb2.QuietHours, datetime]:
    """A quiet window (UTC) that started a minute ago and ends at the next full minute, at least 10 s away."""
    now = datetime.now(UTC)
    if now.second >= 50:
        await asyncio.sleep(61 - now.second)
        now = datetime.now(UTC)
    end = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=1)
    return common_pb2.QuietHours(start=start.strftime("%H:%M"), end=end.strftime("%H:%M")), end


async def _user(herald: Herald, url: str, quiet: common_pb2.QuietHours | None) -> str:
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    user = directory.User(user_id=user_id, addresses={"webhook": url}, timezone="UTC")
    if quiet is not None:
        user.quiet_hours.CopyFrom(quiet)
    await herald.directory.UpsertUser(directory.UpsertUserRequest(user=user), metadata=herald.admin)
    return user_id


async def _send(herald: Herald, app: Metadata, category: common_pb2.Category.ValueType, user_id: str) -> str:
    template = await herald.create_template({"webhook": "{}"}, category)
    return await herald.send(app, msg.SendRequest(template_id=template, recipients=[msg.Recipient(user_id=user_id)]))


# The release is the router's and JetStream's (a NATS schedule), not the database's: one backend is enough for a
# test that waits up to a minute for the window to end.
@pytest.mark.parametrize("shared_mesh", [default_backend()], indirect=True)
async def test_held_until_the_window_ends_then_delivered_while_critical_goes_at_once(
    herald: Herald, sink: WebhookSink
) -> None:
    quiet, end = await _window_now()
    path = f"/quiet/{uuid.uuid4().hex[:8]}"
    user_id = await _user(herald, sink.url(path), quiet)
    _, app = await herald.create_app()

    critical = await _send(herald, app, S.CATEGORY_CRITICAL, user_id)
    assert (await herald.wait_message(app, critical, all_final)).deliveries[0].state == S.DELIVERY_STATE_SENT

    held = await _send(herald, app, S.CATEGORY_NOTIFICATION, user_id)
    message = await herald.wait_message(app, held, lambda m: len(m.deliveries) == 1)
    [delivery] = message.deliveries
    assert delivery.state == S.DELIVERY_STATE_SCHEDULED
    assert delivery.reason == f"quiet hours: held until {end.strftime('%H:%M')} UTC"

    hits = await sink.wait_for(path, 2, timeout=90)
    assert datetime.now(UTC) >= end - timedelta(milliseconds=50), "released before the window ended"
    assert len(hits) == 2
    done = await herald.wait_message(app, held, all_final)
    assert done.deliveries[0].state == S.DELIVERY_STATE_SENT


async def test_the_apps_quiet_hours_apply_to_users_without_their_own(herald: Herald, sink: WebhookSink) -> None:
    quiet, _ = await _window_now()
    reply = await herald.admin_stub.CreateApp(
        admin.CreateAppRequest(name="night-owl", allowed_channels=["webhook"], quiet_hours=quiet), metadata=herald.admin
    )
    assert reply.app.quiet_hours == quiet
    app = bearer(reply.api_key)
    user_id = await _user(herald, sink.url(f"/quiet/{uuid.uuid4().hex[:8]}"), None)
    message_id = await _send(herald, app, S.CATEGORY_MARKETING, user_id)
    message = await herald.wait_message(app, message_id, lambda m: len(m.deliveries) == 1)
    assert message.deliveries[0].state == S.DELIVERY_STATE_SCHEDULED

    never = await _user(herald, sink.url(f"/quiet/{uuid.uuid4().hex[:8]}"), common_pb2.QuietHours(disabled=True))
    message_id = await _send(herald, app, S.CATEGORY_MARKETING, never)
    assert (await herald.wait_message(app, message_id, all_final)).deliveries[0].state == S.DELIVERY_STATE_SENT
