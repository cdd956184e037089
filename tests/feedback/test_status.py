"""StatusService: an app sees only its own messages, and one user's deliveries page by page. In one process:
feedback's consumers on the in-memory bus, read through StatusService (tests/feedback/stage.py); a real Send's
status through the mesh is tests/e2e's."""

import uuid
from datetime import timedelta
from typing import Any

import grpc
import pytest
from herald.v1 import common_pb2, status_service_pb2

from herald.libs.timeutil import now
from tests.feedback.stage import FeedbackStage, feedback_stage
from tests.helpers.client import bad_fields, rpc_error
from tests.helpers.status_events import accepted, status_event

S = common_pb2


async def _sent(feedback: FeedbackStage, app_id: str, user_id: str, seconds_ago: float) -> str:
    """A message of one delivery to `user_id`, queued then SENT, as the router and adapters report it; its id."""
    message_id = f"msg_{uuid.uuid4().hex}"
    at = now() - timedelta(seconds=seconds_ago)
    fields: dict[str, Any] = {"message_id": message_id, "app_id": app_id, "user_id": user_id, "channel": "webhook"}
    await feedback.publish(
        accepted(message_id, app_id, at),
        status_event(f"{message_id}.0", S.DELIVERY_STATE_PENDING, at, attempt=0, **fields),
        status_event(f"{message_id}.0", S.DELIVERY_STATE_SENT, at + timedelta(seconds=0.1), **fields),
    )
    return message_id


async def test_another_apps_message_is_not_found(database_url: str) -> None:
    async with feedback_stage(database_url) as feedback:
        app_id, app = await feedback.app()
        message_id = await _sent(feedback, app_id, "u-1", 0)
        await feedback.wait_message(app, message_id, lambda m: len(m.deliveries) == 1)
        _, other_app = await feedback.app()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await feedback.status.GetMessage(
                status_service_pb2.GetMessageRequest(message_id=message_id), metadata=other_app
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("message_id", "code"),
    [("msg_01NOSUCHMESSAGE0000000000", grpc.StatusCode.NOT_FOUND), ("", grpc.StatusCode.INVALID_ARGUMENT)],
)
async def test_unknown_or_missing_message_id(database_url: str, message_id: str, code: grpc.StatusCode) -> None:
    async with feedback_stage(database_url) as feedback:
        _, app = await feedback.app()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await feedback.status.GetMessage(status_service_pb2.GetMessageRequest(message_id=message_id), metadata=app)
        assert err.value.code() == code


async def test_status_needs_an_app_key(database_url: str) -> None:
    async with feedback_stage(database_url) as feedback:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await feedback.status.GetMessage(status_service_pb2.GetMessageRequest(message_id="msg_x"))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_one_users_deliveries_are_listed_newest_first_page_by_page(database_url: str) -> None:
    async with feedback_stage(database_url) as feedback:
        app_id, app = await feedback.app()
        user_id = f"u-{uuid.uuid4().hex[:8]}"
        sent = [await _sent(feedback, app_id, user_id, seconds_ago=10 - n) for n in range(5)]
        someone_else = await _sent(feedback, app_id, "another-user", 0)
        for message_id in [*sent, someone_else]:
            await feedback.wait_message(
                app, message_id, lambda m: [d.state for d in m.deliveries] == [S.DELIVERY_STATE_SENT]
            )

        listed: list[status_service_pb2.Delivery] = []
        token = ""
        while True:
            page = await feedback.status.ListDeliveries(
                status_service_pb2.ListDeliveriesRequest(user_id=user_id, page_size=2, page_token=token), metadata=app
            )
            assert len(page.deliveries) <= 2
            listed.extend(page.deliveries)
            token = page.next_page_token
            if not token:
                break
        assert [d.message_id for d in listed] == sent[::-1]
        assert all(d.user_id == user_id and d.history for d in listed)
        assert [h.state for h in listed[0].history][-1] == S.DELIVERY_STATE_SENT

        _, other_app = await feedback.app()
        theirs = await feedback.status.ListDeliveries(
            status_service_pb2.ListDeliveriesRequest(user_id=user_id), metadata=other_app
        )
        assert list(theirs.deliveries) == []
        failed = await feedback.status.ListDeliveries(
            status_service_pb2.ListDeliveriesRequest(user_id=user_id, state=S.DELIVERY_STATE_FAILED), metadata=app
        )
        assert list(failed.deliveries) == []
        error = await rpc_error(
            feedback.status.ListDeliveries(
                status_service_pb2.ListDeliveriesRequest(user_id=user_id, page_token="not-a-token"), metadata=app
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in bad_fields(error)
