"""Load shedding: while the marketing backlog is over its bound, new marketing is refused with when to retry,
and critical messages are accepted and delivered as ever."""

import asyncio
import uuid
from pathlib import Path

import grpc
import pytest
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg

from devmesh.mesh import Binary, free_port
from tests.conftest import running_mesh
from tests.helpers.client import retry_delay
from tests.helpers.databases import default_backend
from tests.helpers.metrics import scrape, total
from tests.helpers.webhook_sink import WebhookSink

# It times a backlog draining through a router of lower CPU priority: run alone, after the rest (Makefile).
pytestmark = pytest.mark.serial

LIMIT = 40
S = common_pb2


async def test_over_the_marketing_backlog_marketing_is_refused_and_critical_flows(
    tmp_path: Path, sink: WebhookSink
) -> None:
    env = {"HERALD_MARKETING_BACKLOG_LIMIT": str(LIMIT)}
    async with running_mesh(tmp_path, default_backend(), env) as (mesh, herald):
        # The router of every category steps aside for one that routes critical messages only: marketing waits.
        everything = mesh.binaries["router"]
        await everything.stop()
        critical_only = Binary(
            "router",
            f"127.0.0.1:{free_port()}",
            {**everything.env, "HERALD_PIPELINES": "critical"},
            everything.log_path.with_name("router-critical.log"),
        )
        critical_only.start()
        try:
            await critical_only.wait_healthy()

            _, app = await herald.create_app()
            path = f"/shed/{uuid.uuid4().hex[:8]}"
            recipient = msg.Recipient(addresses={"webhook": sink.url(path)})
            marketing = msg.SendRequest(
                template_id=await herald.create_template({"webhook": "{}"}, S.CATEGORY_MARKETING),
                recipients=[recipient],
            )
            critical = msg.SendRequest(
                template_id=await herald.create_template({"webhook": "{}"}, S.CATEGORY_CRITICAL), recipients=[recipient]
            )
            await asyncio.gather(*(herald.send(app, marketing) for _ in range(LIMIT + 10)))

            error = None
            for _ in range(50):  # intake reads the backlog once a second
                try:
                    await herald.send(app, marketing)
                except grpc.aio.AioRpcError as e:
                    error = e
                    break
                await asyncio.sleep(0.2)
            assert error is not None, "marketing still accepted over the bound"
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert 1 <= retry_delay(error) <= 300
            assert "marketing" in (error.details() or "")

            batch = await herald.messages.SendBatch(msg.SendBatchRequest(requests=[marketing, critical]), metadata=app)
            refused, accepted = batch.results
            assert (
                refused.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] and refused.error.retry_delay.seconds
            )
            assert accepted.response.message_id, "the critical entry of the same call is accepted"
            # An SRE tells shedding (herald's backlog) from callers over their rate limit.
            refusals = await scrape(mesh.metrics_url("intake"))
            assert total(refusals, "herald_intake_messages_refused_total", reason="load_shed") == 2
            assert total(refusals, "herald_intake_messages_refused_total") == 2
            urgent = await herald.send(app, critical)
            hits = await sink.wait_for(path, 2, timeout=30)
            assert {h.headers["Herald-Message-Id"] for h in hits} == {accepted.response.message_id, urgent}

            everything.start()  # the backlog drains, and marketing is accepted again
            await everything.wait_healthy()
            codes = []
            for _ in range(150):
                try:
                    await herald.send(app, marketing)
                    break
                except grpc.aio.AioRpcError as e:
                    codes.append(e.code())
                    await asyncio.sleep(0.2)
            else:
                raise AssertionError("marketing still refused after the backlog drained")
            assert set(codes) <= {grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        finally:
            await critical_only.stop()
