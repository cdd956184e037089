"""Apps and keys: get, list, disable, rotate with a grace period, allowed categories."""

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf import duration_pb2
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import common_pb2, inbox_service_pb2, status_service_pb2, topic_service_pb2
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, Metadata, bearer

# Other services cache a key's registry entry this long (herald/libs/auth.py).
KEY_CACHE_SECONDS = 5


def _dry_run(template: str) -> msg.SendRequest:
    return msg.SendRequest(
        template_id=template, recipients=[msg.Recipient(addresses={"webhook": "https://example.com/h"})], dry_run=True
    )


async def _code(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as e:
        code: grpc.StatusCode = e.code()
        return code
    return grpc.StatusCode.OK


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = KEY_CACHE_SECONDS + 5) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.2)


async def test_get_and_list_apps_page_by_page(herald: Herald) -> None:
    created = [await herald.create_app() for _ in range(3)]
    got = await herald.admin_stub.GetApp(admin.GetAppRequest(app_id=created[0][0]), metadata=herald.admin)
    assert got.app_id == created[0][0] and got.allowed_channels == ["webhook"] and not got.disabled
    seen: list[str] = []
    token = ""
    while True:
        page = await herald.admin_stub.ListApps(
            admin.ListAppsRequest(page_size=2, page_token=token), metadata=herald.admin
        )
        assert len(page.apps) <= 2
        seen += [a.app_id for a in page.apps]
        if not (token := page.next_page_token):
            break
    assert {app_id for app_id, _ in created} <= set(seen)
    assert seen == sorted(seen), "apps come in creation order"
    assert await _code(herald.admin_stub.GetApp(admin.GetAppRequest(app_id="app_nope"), metadata=herald.admin)) == (
        grpc.StatusCode.NOT_FOUND
    )
    bad_token = herald.admin_stub.ListApps(admin.ListAppsRequest(page_token="%%%"), metadata=herald.admin)
    assert await _code(bad_token) == grpc.StatusCode.INVALID_ARGUMENT


async def test_disabled_app_is_refused_until_enabled(herald: Herald) -> None:
    app_id, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    assert await _is(grpc.StatusCode.OK, herald, template, app)
    disabled = await herald.admin_stub.DisableApp(admin.DisableAppRequest(app_id=app_id), metadata=herald.admin)
    assert disabled.disabled
    await _eventually(lambda: _is(grpc.StatusCode.PERMISSION_DENIED, herald, template, app))
    await herald.admin_stub.EnableApp(admin.EnableAppRequest(app_id=app_id), metadata=herald.admin)
    await _eventually(lambda: _is(grpc.StatusCode.OK, herald, template, app))


async def _is(code: grpc.StatusCode, herald: Herald, template: str, app: Metadata) -> bool:
    return bool(await _code(herald.messages.Send(_dry_run(template), metadata=app)) == code)


async def test_rotated_key_works_through_the_grace_period_and_not_after(herald: Herald) -> None:
    app_id, old = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    rotated = await herald.admin_stub.RotateAppKey(
        admin.RotateAppKeyRequest(app_id=app_id, grace_period=duration_pb2.Duration(seconds=3600)),
        metadata=herald.admin,
    )
    new = bearer(rotated.api_key)
    assert rotated.api_key != old[0][1]
    assert await _is(grpc.StatusCode.OK, herald, template, new)
    assert await _is(grpc.StatusCode.OK, herald, template, old), "the old key keeps working in its grace period"

    await herald.admin_stub.RotateAppKey(
        admin.RotateAppKeyRequest(app_id=app_id, grace_period=duration_pb2.Duration(seconds=0)), metadata=herald.admin
    )
    await _eventually(lambda: _is(grpc.StatusCode.UNAUTHENTICATED, herald, template, old))
    await _eventually(lambda: _is(grpc.StatusCode.UNAUTHENTICATED, herald, template, new))


async def test_rotation_grace_is_bounded(herald: Herald) -> None:
    app_id, _ = await herald.create_app()
    call = herald.admin_stub.RotateAppKey(
        admin.RotateAppKeyRequest(app_id=app_id, grace_period=duration_pb2.Duration(seconds=-1)), metadata=herald.admin
    )
    assert await _code(call) == grpc.StatusCode.INVALID_ARGUMENT


async def test_app_limited_to_categories_may_not_send_others(herald: Herald) -> None:
    reply = await herald.admin_stub.CreateApp(
        admin.CreateAppRequest(
            name="otp-service", allowed_channels=["webhook"], allowed_categories=[common_pb2.CATEGORY_CRITICAL]
        ),
        metadata=herald.admin,
    )
    app = bearer(reply.api_key)
    assert list(reply.app.allowed_categories) == [common_pb2.CATEGORY_CRITICAL]
    critical = await herald.create_template({"webhook": "{}"}, common_pb2.CATEGORY_CRITICAL)
    marketing = await herald.create_template({"webhook": "{}"}, common_pb2.CATEGORY_MARKETING)
    assert await _is(grpc.StatusCode.OK, herald, critical, app)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await herald.messages.Send(_dry_run(marketing), metadata=app)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "marketing" in (err.value.details() or "")


async def test_disabling_an_app_or_rotating_its_key_out_reaches_every_binary_within_a_second(herald: Herald) -> None:
    """Every binary caches what a key stands for; a change is announced, so none waits for its cache to age."""
    app_id, key = await herald.create_app(("inbox",))
    token = await herald.inbox.CreateInboxToken(inbox_service_pb2.CreateInboxTokenRequest(user_id="u-1"), metadata=key)
    holder = bearer(token.token)
    calls: dict[str, Callable[[Metadata], Awaitable[object]]] = {
        "adapters (key)": lambda m: herald.inbox.Sync(inbox_service_pb2.SyncRequest(user_id="u-1"), metadata=m),
        "feedback": lambda m: herald.status.ListDeliveries(
            status_service_pb2.ListDeliveriesRequest(user_id="u-1"), metadata=m
        ),
        "router": lambda m: herald.topics.ListTopics(topic_service_pb2.ListTopicsRequest(), metadata=m),
    }

    async def refused_everywhere(old: Metadata) -> dict[str, grpc.StatusCode]:
        """What each binary answers the old credentials, polled until all refuse them, for at most a second."""
        codes: dict[str, grpc.StatusCode] = {}
        try:
            async with asyncio.timeout(1.0):
                while not codes or grpc.StatusCode.OK in codes.values():
                    codes = {where: await _code(call(old)) for where, call in calls.items()}
                    codes["adapters (inbox token)"] = await _code(
                        herald.inbox.Sync(inbox_service_pb2.SyncRequest(), metadata=holder)
                    )
        except TimeoutError:
            pass
        return codes

    for call in calls.values():  # each binary has the key in its cache now
        assert await _code(call(key)) == grpc.StatusCode.OK
    await herald.admin_stub.DisableApp(admin.DisableAppRequest(app_id=app_id), metadata=herald.admin)
    disabled = await refused_everywhere(key)
    assert set(disabled.values()) <= {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}, disabled

    await herald.admin_stub.EnableApp(admin.EnableAppRequest(app_id=app_id), metadata=herald.admin)
    await _eventually(lambda: _all_ok([call(key) for call in calls.values()]))
    await herald.admin_stub.RotateAppKey(
        admin.RotateAppKeyRequest(app_id=app_id, grace_period=duration_pb2.Duration(seconds=0)), metadata=herald.admin
    )
    rotated = await refused_everywhere(key)
    assert set(rotated.values()) == {grpc.StatusCode.UNAUTHENTICATED}, rotated


async def _all_ok(calls: list[Awaitable[object]]) -> bool:
    return all([await _code(call) == grpc.StatusCode.OK for call in calls])
