"""Content de-duplication: the same content to the same user and channel within the window goes out once."""

import uuid
from pathlib import Path

from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg

from tests.conftest import running_mesh
from tests.helpers.client import Herald, Metadata, all_final
from tests.helpers.databases import default_backend
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


async def _send(herald: Herald, app: Metadata, template: str, url: str, n: str) -> tuple[int, str]:
    request = msg.SendRequest(
        template_id=template, recipients=[msg.Recipient(user_id="u1", addresses={"webhook": url})], variables={"n": n}
    )
    message = await herald.wait_message(app, await herald.send(app, request), all_final)
    return message.deliveries[0].state, message.deliveries[0].reason


async def test_repeated_content_is_suppressed_but_new_content_and_critical_go_out(
    tmp_path: Path, sink: WebhookSink
) -> None:
    async with running_mesh(tmp_path, default_backend(), {"HERALD_DEDUP_WINDOW_SECONDS": "30"}) as (_, herald):
        _, app = await herald.create_app()
        marketing = await herald.create_template({"webhook": "sale {{ n }}"}, S.CATEGORY_MARKETING)
        critical = await herald.create_template({"webhook": "code {{ n }}"}, S.CATEGORY_CRITICAL)
        path = f"/dedup/{uuid.uuid4().hex[:8]}"
        url = sink.url(path)

        assert (await _send(herald, app, marketing, url, "1"))[0] == S.DELIVERY_STATE_SENT
        state, reason = await _send(herald, app, marketing, url, "1")
        assert state == S.DELIVERY_STATE_SUPPRESSED and reason.startswith("duplicate")
        assert (await _send(herald, app, marketing, url, "2"))[0] == S.DELIVERY_STATE_SENT
        assert (await _send(herald, app, critical, url, "9"))[0] == S.DELIVERY_STATE_SENT
        assert (await _send(herald, app, critical, url, "9"))[0] == S.DELIVERY_STATE_SENT
        assert sorted(r.body for r in sink.for_path(path)) == [b"code 9", b"code 9", b"sale 1", b"sale 2"]
