"""A delivery that herald gives up on: a notification to a webhook path of the sink that answers 502 every time the
adapters try it (the tests' retry schedule, tests/conftest.py), dead-lettered once its attempts are spent."""

import uuid
from dataclasses import dataclass

from herald.v1 import message_service_pb2 as msg
from herald.v1 import status_service_pb2

from tests.conftest import RETRY_BACKOFF
from tests.helpers.client import Herald, Metadata, all_final
from tests.helpers.webhook_sink import WebhookSink

ATTEMPTS = len(RETRY_BACKOFF["HERALD_RETRY_BACKOFF_NOTIFICATION"].split(",")) + 1


@dataclass(frozen=True)
class DeadLettered:
    app: Metadata
    message_id: str
    delivery: status_service_pb2.Delivery
    # The sink's path the delivery goes to: it answers 200 once the 502s are spent.
    path: str


async def dead_lettered(herald: Herald, sink: WebhookSink) -> DeadLettered:
    path = f"/dead/{uuid.uuid4().hex[:8]}"
    sink.answer(path, *[502] * ATTEMPTS)
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    request = msg.SendRequest(template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})])
    message_id = await herald.send(app, request)
    [delivery] = (await herald.wait_message(app, message_id, all_final)).deliveries
    return DeadLettered(app, message_id, delivery, path)
