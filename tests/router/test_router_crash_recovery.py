"""A router killed with SIGKILL mid-flight loses nothing and duplicates nothing once it is back.

Half the messages are accepted just before the kill (some of them mid fan-out),
half while the router is down; all must arrive once each after the restart.
"""

import asyncio
import signal
from collections import Counter
from pathlib import Path

import pytest
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg

from tests.conftest import running_mesh
from tests.helpers.client import all_final
from tests.helpers.databases import default_backend
from tests.helpers.webhook_sink import WebhookSink

# Whole meshes started, killed or kept waiting: run first, beside the rest (tests/conftest.py).
pytestmark = pytest.mark.slow

MESSAGES = 60
RECIPIENTS = 3


async def test_router_sigkill_in_flight_then_restart_delivers_each_exactly_once(
    tmp_path: Path, sink: WebhookSink
) -> None:
    async with running_mesh(tmp_path, default_backend()) as (mesh, herald):
        _, app = await herald.create_app()
        template = await herald.create_template({"webhook": '{"n": "{{ n }}"}'})

        async def send(i: int) -> str:
            recipients = [msg.Recipient(addresses={"webhook": sink.url(f"/crash/{i}/{r}")}) for r in range(RECIPIENTS)]
            return await herald.send(
                app, msg.SendRequest(template_id=template, recipients=recipients, variables={"n": str(i)})
            )

        first = await asyncio.gather(*(send(i) for i in range(MESSAGES // 2)))
        router = mesh.binaries["router"]
        assert await router.stop(signal.SIGKILL) == -signal.SIGKILL
        second = await asyncio.gather(*(send(i) for i in range(MESSAGES // 2, MESSAGES)))

        router.start()
        await router.wait_healthy()
        for message_id in first + second:
            message = await herald.wait_message(app, message_id, lambda m: all_final(m, RECIPIENTS), timeout=90)
            assert {d.state for d in message.deliveries} == {common_pb2.DELIVERY_STATE_SENT}

        await asyncio.sleep(2)  # room for any stray duplicate to arrive
        hits = Counter(r.path for r in sink.received if r.path.startswith("/crash/"))
        assert len(hits) == MESSAGES * RECIPIENTS
        assert set(hits.values()) == {1}, f"duplicates: {[p for p, n in hits.items() if n > 1]}"
