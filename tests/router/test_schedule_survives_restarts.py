"""A message scheduled half a minute ahead is delivered once, on time, although every herald process and the NATS
server were restarted in between: the schedule lives in JetStream, not in any process."""

import asyncio
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg

from tests.conftest import running_mesh
from tests.helpers.client import all_final
from tests.helpers.databases import default_backend
from tests.helpers.webhook_sink import WebhookSink


async def test_scheduled_message_survives_restarting_everything(tmp_path: Path, sink: WebhookSink) -> None:
    async with running_mesh(tmp_path, default_backend()) as (mesh, herald):
        assert mesh.nats is not None
        _, app = await herald.create_app()
        template = await herald.create_template({"webhook": "{}"})
        path = f"/restart/{uuid.uuid4().hex[:8]}"
        send_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)
        request = msg.SendRequest(
            template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})]
        )
        request.send_at.FromDatetime(send_at)
        message_id = await herald.send(app, request)
        await herald.wait_message(app, message_id, lambda m: len(m.deliveries) == 1)

        for binary in mesh.binaries.values():
            assert await binary.stop(signal.SIGKILL) == -signal.SIGKILL
        await mesh.nats.stop()
        await asyncio.sleep(2)
        await mesh.nats.start()
        for binary in mesh.binaries.values():
            binary.start()
        await asyncio.gather(*(b.wait_healthy() for b in mesh.binaries.values()))
        assert datetime.now(UTC) < send_at - timedelta(seconds=3), "everything restarted before the message fell due"

        [hit] = await sink.wait_for(path, timeout=120)
        arrived = datetime.now(UTC)
        assert send_at - timedelta(seconds=2) <= arrived <= send_at + timedelta(seconds=2), (send_at, arrived)
        message = await herald.wait_message(app, message_id, all_final)
        assert message.deliveries[0].state == common_pb2.DELIVERY_STATE_SENT
        await asyncio.sleep(2)
        assert len(sink.for_path(path)) == 1
        assert hit.signature_ok
