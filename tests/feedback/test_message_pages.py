"""GetMessage for a campaign: exact counts by state for the whole message, and its deliveries a bounded page at a
time, so a support engineer can ask about a message of any size."""

import asyncio
import statistics
import time
import uuid
from typing import Any

import grpc
import pytest
from herald.v1 import common_pb2, status_service_pb2

from devmesh.mesh import Mesh
from tests.helpers.client import Herald, Metadata, bad_fields, rpc_error
from tests.helpers.status_events import accepted, publish, status_event

# Whole meshes started, killed or kept waiting: run first, beside the rest (tests/conftest.py).
pytestmark = pytest.mark.slow

S = common_pb2
AUDIENCE = 50_000
# Delivery n ends in STATES[n % 5] and goes out on CHANNELS[n % 2].
STATES = (
    S.DELIVERY_STATE_SENT,
    S.DELIVERY_STATE_SENT,
    S.DELIVERY_STATE_SENT,
    S.DELIVERY_STATE_FAILED,
    S.DELIVERY_STATE_PENDING,
)
CHANNELS = ("webhook", "sms")


def _expected_counts(audience: int) -> dict[int, int]:
    counts: dict[int, int] = {}
    for n in range(audience):
        counts[STATES[n % 5]] = counts.get(STATES[n % 5], 0) + 1
    return counts


async def _campaign(mesh: Mesh, herald: Herald, audience: int, content: str = "") -> tuple[Metadata, str]:
    """A message of `audience` deliveries as feedback hears of them: the accepted message and one status event
    each, as the router and adapters publish them."""
    app_id, app = await herald.create_app()
    message_id = f"msg_pages_{uuid.uuid4().hex[:12]}"
    events = [
        status_event(
            f"{message_id}.{n}",
            STATES[n % 5],
            message_id=message_id,
            app_id=app_id,
            user_id=f"user-{n}",
            channel=CHANNELS[n % 2],
            content=content,
        )
        for n in range(audience)
    ]
    await publish(mesh, accepted(message_id, app_id), *events)
    return app, message_id


async def _get(herald: Herald, app: Metadata, **request: Any) -> status_service_pb2.Message:
    message: status_service_pb2.Message = await herald.status.GetMessage(
        status_service_pb2.GetMessageRequest(**request), metadata=app
    )
    return message


async def _recorded(herald: Herald, app: Metadata, message_id: str, audience: int) -> status_service_pb2.Message:
    """GetMessage once feedback has folded every event (it records asynchronously)."""
    deadline = time.monotonic() + 180
    while True:
        try:
            message = await _get(herald, app, message_id=message_id)
            if message.delivery_count == audience:
                return message
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
        assert time.monotonic() < deadline, "feedback did not record the campaign in time"
        await asyncio.sleep(0.5)


async def _every_page(herald: Herald, app: Metadata, **request: Any) -> list[status_service_pb2.Delivery]:
    deliveries: list[status_service_pb2.Delivery] = []
    token = ""
    while True:
        page = await _get(herald, app, page_token=token, **request)
        deliveries += page.deliveries
        if not (token := page.next_page_token):
            return deliveries


async def test_a_large_message_answers_with_exact_counts_and_pages_every_delivery_once(
    shared_mesh: tuple[Mesh, Herald],
) -> None:
    mesh, herald = shared_mesh
    app, message_id = await _campaign(mesh, herald, AUDIENCE)
    first = await _recorded(herald, app, message_id, AUDIENCE)

    timings = []
    for _ in range(3):
        started = time.perf_counter()
        first = await _get(herald, app, message_id=message_id)
        timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 1.0, f"GetMessage of {AUDIENCE:,} deliveries took {timings}"
    assert {c.state: c.count for c in first.delivery_state_counts} == _expected_counts(AUDIENCE)
    assert first.delivery_count == AUDIENCE
    assert len(first.deliveries) == 100 and first.next_page_token, "a bounded first page, with more to come"
    assert [d.user_id for d in first.deliveries[:2]] == ["user-0", "user-1"], "oldest first"
    assert all(len(d.history) == 1 for d in first.deliveries)

    paged = await _every_page(herald, app, message_id=message_id, page_size=1000)
    ids = [d.delivery_id for d in paged]
    assert len(ids) == AUDIENCE and set(ids) == {f"{message_id}.{n}" for n in range(AUDIENCE)}

    failed_sms = await _every_page(
        herald, app, message_id=message_id, page_size=1000, state=S.DELIVERY_STATE_FAILED, channel="sms"
    )
    assert {d.delivery_id for d in failed_sms} == {f"{message_id}.{n}" for n in range(AUDIENCE) if n % 10 == 3}
    one_user = await _get(herald, app, message_id=message_id, user_id="user-4242")
    assert [d.delivery_id for d in one_user.deliveries] == [f"{message_id}.4242"] and not one_user.next_page_token
    assert one_user.delivery_count == AUDIENCE, "the counts are the whole message's, whatever the filter"


async def test_a_page_of_large_contents_stops_below_the_grpc_message_limit(shared_mesh: tuple[Mesh, Herald]) -> None:
    mesh, herald = shared_mesh
    app, message_id = await _campaign(mesh, herald, 120, content="x" * 60_000)
    await _recorded(herald, app, message_id, 120)
    first = await _get(herald, app, message_id=message_id, page_size=120)
    assert 0 < len(first.deliveries) < 120 and first.next_page_token
    assert first.ByteSize() < 4 * 1024 * 1024
    paged = await _every_page(herald, app, message_id=message_id, page_size=120)
    assert sorted(d.delivery_id for d in paged) == sorted(f"{message_id}.{n}" for n in range(120))


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [({"page_size": 1001}, "page_size"), ({"page_size": -1}, "page_size"), ({"page_token": "nonsense!"}, "page_token")],
)
async def test_bad_pages_name_the_field(
    shared_mesh: tuple[Mesh, Herald], request_fields: dict[str, object], field: str
) -> None:
    mesh, herald = shared_mesh
    app, message_id = await _campaign(mesh, herald, 1)
    error = await rpc_error(_get(herald, app, message_id=message_id, **request_fields))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_fields(error)
