"""Priority pipelines: critical messages go through while marketing deliveries are stuck."""

import asyncio
import uuid

from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, all_final
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2
STUCK = 40


async def test_a_critical_message_is_delivered_while_marketing_deliveries_hang(
    herald: Herald, sink: WebhookSink
) -> None:
    slow, fast = f"/stuck/{uuid.uuid4().hex[:8]}", f"/urgent/{uuid.uuid4().hex[:8]}"
    _, app = await herald.create_app()
    marketing = await herald.create_template({"webhook": '{"n": "{{ n }}"}'}, S.CATEGORY_MARKETING)
    critical = await herald.create_template({"webhook": '{"code": "{{ code }}"}'}, S.CATEGORY_CRITICAL)
    sink.stalled.add(slow)
    try:
        stuck = msg.Recipient(addresses={"webhook": sink.url(slow)})
        held = await asyncio.gather(
            *(
                herald.send(app, msg.SendRequest(template_id=marketing, recipients=[stuck], variables={"n": str(n)}))
                for n in range(STUCK)
            )
        )
        # One hanging request holds its whole batch: the marketing pipeline is stuck from here.
        await sink.wait_for(slow, 1)

        urgent = msg.Recipient(addresses={"webhook": sink.url(fast)})
        message_id = await herald.send(
            app, msg.SendRequest(template_id=critical, recipients=[urgent], variables={"code": "123456"})
        )
        sent = await herald.wait_message(app, message_id, all_final)
        assert sent.deliveries[0].state == S.DELIVERY_STATE_SENT
        # Not one marketing attempt has ended yet: the critical message did not wait for any of them.
        for marketing_id in held:
            waiting = await herald.wait_message(app, marketing_id, lambda m: len(m.deliveries) == 1)
            assert (waiting.deliveries[0].state, waiting.deliveries[0].attempts) == (S.DELIVERY_STATE_PENDING, 0)
    finally:
        sink.release()
