"""The backbone end to end: Send through the generated stubs, a webhook arrives, GetMessage tells the story."""

import json
import uuid
from pathlib import Path

import pytest
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg

from tests.conftest import running_mesh
from tests.helpers.client import all_final
from tests.helpers.databases import backends
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


def _path() -> str:
    return f"/hook/{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("backend", backends())
async def test_send_reaches_webhook_and_status_shows_sent(backend: str, tmp_path: Path, sink: WebhookSink) -> None:
    async with running_mesh(tmp_path, backend) as (_, herald):
        _, app = await herald.create_app()
        template = await herald.create_template({"webhook": '{"text": "Hello {{ name }}", "order": "{{ order }}"}'})
        path = _path()
        message_id = await herald.send(
            app,
            msg.SendRequest(
                template_id=template,
                recipients=[
                    msg.Recipient(user_id="u1", addresses={"webhook": sink.url(path)}, variables={"name": "Ann"})
                ],
                variables={"order": "A-17"},
                channels=["webhook"],
            ),
        )
        assert message_id.startswith("msg_")

        [hit] = await sink.wait_for(path)
        assert json.loads(hit.body) == {"text": "Hello Ann", "order": "A-17"}
        assert hit.signature_ok, "the Herald-Signature header must verify with the shared secret"
        assert hit.headers["Content-Type"] == "application/json"
        assert hit.headers["Herald-Message-Id"] == message_id
        assert hit.headers["Idempotency-Key"] == hit.headers["Herald-Delivery-Id"]

        message = await herald.wait_message(app, message_id, all_final)
        [delivery] = message.deliveries
        assert delivery.state == S.DELIVERY_STATE_SENT
        assert delivery.attempts == 1
        assert delivery.channel == "webhook" and delivery.user_id == "u1"
        assert delivery.delivery_id == hit.headers["Herald-Delivery-Id"]
        assert (
            delivery.create_time.seconds > 0 and delivery.update_time.ToDatetime() >= delivery.create_time.ToDatetime()
        )
        assert [h.state for h in delivery.history] == [S.DELIVERY_STATE_PENDING, S.DELIVERY_STATE_SENT]
        assert message.template_id == template and message.template_version == 1
        assert message.category == S.CATEGORY_NOTIFICATION
