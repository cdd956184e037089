"""A message a stage can never handle is retried a bounded number of times, then waits, whole and explained, where
an operator lists it and, once the cause is fixed, replays it: it neither holds the stage for ever nor vanishes.
Whoever asks about it sees its deliveries FAILED with the reason, and the stage's metric counts it."""

import asyncio
from pathlib import Path

import grpc
import nats
import pytest
from herald.v1 import admin_service_pb2, common_pb2
from herald.v1 import dead_letter_service_pb2 as dlq
from herald.v1 import message_service_pb2 as msg
from typer.testing import CliRunner

from herald.internal.v1 import work_pb2
from herald.libs import subjects
from herald.tools.heraldctl.main import cli
from tests.conftest import ADMIN_TOKEN, running_mesh
from tests.helpers.client import Herald, all_final, bad_fields, rpc_error
from tests.helpers.databases import default_backend
from tests.helpers.metrics import scrape, total

S = common_pb2
CONSUMER = "router-notification"


async def _listed(herald: Herald, timeout: float = 60.0) -> list[dlq.UnprocessedMessage]:
    """The router's unprocessed messages, once there are some."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        reply = await herald.dead_letters.ListUnprocessedMessages(
            dlq.ListUnprocessedMessagesRequest(consumer=CONSUMER), metadata=herald.admin
        )
        if reply.unprocessed_messages or asyncio.get_running_loop().time() > deadline:
            return list(reply.unprocessed_messages)
        await asyncio.sleep(0.2)


async def test_a_message_the_router_can_never_route_is_listed_then_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_mesh(tmp_path, default_backend(), {"HERALD_STAGE_RETRY_BACKOFF": "0.2,0.2"}) as (mesh, herald):
        template = admin_service_pb2.Template(
            template_id="t", version=1, category=S.CATEGORY_NOTIFICATION, contents=[S.ChannelContent(channel="webhook")]
        )
        app_id, app = await herald.create_app()
        poison = work_pb2.AcceptedMessage(
            message_id="msg_poison", app_id=app_id, template=template, channels=["webhook"]
        )
        poison.recipients.append(msg.Recipient(addresses={"webhook": "http://127.0.0.1:9/x"}))
        poison.send_at.nanos = -1  # no clock can hold it: routing it fails on every attempt
        nc = await nats.connect(mesh.nats_url)
        try:
            batch = work_pb2.AcceptedBatch(messages=[poison])
            await nc.jetstream().publish(subjects.message_accepted(S.CATEGORY_NOTIFICATION), batch.SerializeToString())
        finally:
            await nc.close()

        [first] = await _listed(herald)
        assert first.consumer == CONSUMER
        assert first.subject == subjects.message_accepted(S.CATEGORY_NOTIFICATION)
        assert first.deliveries == 3, "tried once, then after each of the two retries' delays"
        assert first.reason.startswith("ValueError") and first.size_bytes > 0
        assert first.dead_time.seconds > 0
        failed = await herald.wait_message(app, "msg_poison", all_final)
        [delivery] = failed.deliveries
        assert delivery.state == S.DELIVERY_STATE_FAILED and delivery.channel == "webhook"
        assert f"herald gave up processing it ({CONSUMER}: ValueError" in delivery.reason
        assert "replay" in delivery.reason
        given_up = await scrape(mesh.metrics_url("router"))
        assert total(given_up, "herald_unprocessed_messages_total", consumer=CONSUMER) == 1
        monkeypatch.setenv("HERALD_ADAPTERS_ADDR", mesh.addr("adapters"))
        monkeypatch.setenv("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
        shown = CliRunner().invoke(cli, ["dlq", "unprocessed", "--consumer", CONSUMER], env={"COLUMNS": "250"})
        assert shown.exit_code == 0, shown.output
        assert str(first.sequence) in shown.output and "ValueError" in shown.output, shown.output

        replay = dlq.ReplayUnprocessedMessagesRequest(sequences=[first.sequence], consumer=CONSUMER)
        reply = await herald.dead_letters.ReplayUnprocessedMessages(replay, metadata=herald.admin)
        assert reply.replayed == 1
        again = await herald.dead_letters.ReplayUnprocessedMessages(replay, metadata=herald.admin)
        assert again.replayed == 0, "a replayed message leaves the list"
        [second] = await _listed(herald)  # the cause is not fixed: it is tried again, and comes back
        assert second.sequence > first.sequence and second.deliveries == 3

        stranger = dlq.ReplayUnprocessedMessagesRequest(sequences=[second.sequence], consumer="feedback-events")
        reply = await herald.dead_letters.ReplayUnprocessedMessages(stranger, metadata=herald.admin)
        assert reply.replayed == 0, "a sequence of another consumer's is not replayed"

        bad = dlq.ListUnprocessedMessagesRequest(consumer="router.*", page_token="x")
        error = await rpc_error(herald.dead_letters.ListUnprocessedMessages(bad, metadata=herald.admin))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(bad_fields(error)) == {"consumer", "page_token"}
        denied = await rpc_error(herald.dead_letters.ListUnprocessedMessages(dlq.ListUnprocessedMessagesRequest()))
        assert denied.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
