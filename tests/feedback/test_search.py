"""SearchDeliveries: support finds what was sent by template, user, channel, state, time and the words of the
rendered content, page by page. How fast it is over a million deliveries is bench/search.py's (make bench)."""

import asyncio
import uuid
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import status_service_pb2 as pb

from tests.helpers.client import Herald, Metadata, all_final, bad_fields, rpc_error
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


async def _search(herald: Herald, app: Metadata, **fields: Any) -> list[pb.Delivery]:
    """Every page of a search."""
    found: list[pb.Delivery] = []
    token = ""
    while True:
        page = await herald.status.SearchDeliveries(
            pb.SearchDeliveriesRequest(page_size=2, page_token=token, **fields),
            metadata=app,
        )
        found.extend(page.deliveries)
        token = page.next_page_token
        if not token:
            return found


async def test_deliveries_are_found_by_words_and_filters_newest_first(herald: Herald, sink: WebhookSink) -> None:
    _, app = await herald.create_app()
    shipped = await herald.create_template({"webhook": '{"text": "Order {{ order }} shipped to {{ city }}"}'})
    code = await herald.create_template({"webhook": '{"text": "Your code is {{ order }}"}'})
    hook = sink.url(f"/search/{uuid.uuid4().hex[:8]}")
    sent: list[tuple[str, str, str]] = []  # (message id, template, user)

    async def send(template: str, user: str, order: str, city: str = "") -> None:
        recipient = msg.Recipient(user_id=user, addresses={"webhook": hook})
        request = msg.SendRequest(
            template_id=template, recipients=[recipient], variables={"order": order, "city": city}
        )
        message_id = await herald.send(app, request)
        await herald.wait_message(app, message_id, all_final)
        sent.append((message_id, template, user))

    await send(shipped, "ana", "A-1", "Lisbon")
    await send(shipped, "ben", "A-2", "Berlin")
    middle = timestamp_pb2.Timestamp()
    middle.GetCurrentTime()
    await asyncio.sleep(0.01)
    await send(shipped, "ana", "A-3", "Lisbon")
    await send(code, "ana", "482910")

    lisbon = await _search(herald, app, query="SHIPPED lisbon")
    assert [d.message_id for d in lisbon] == [sent[2][0], sent[0][0]]
    assert lisbon[0].content == '{"text": "Order A-3 shipped to Lisbon"}' and lisbon[0].template_id == shipped
    assert [d.message_id for d in await _search(herald, app, query="482910")] == [sent[3][0]]
    assert [d.message_id for d in await _search(herald, app, template_id=shipped, user_id="ana")] == [
        sent[2][0],
        sent[0][0],
    ]
    assert [d.message_id for d in await _search(herald, app, start_time=middle)] == [sent[3][0], sent[2][0]]
    assert [d.message_id for d in await _search(herald, app, end_time=middle, query="berlin")] == [sent[1][0]]
    assert len(await _search(herald, app)) == 4
    assert await _search(herald, app, state=S.DELIVERY_STATE_FAILED) == []
    assert await _search(herald, app, query='shipped" OR "code') == []  # words, never query syntax

    _, other_app = await herald.create_app()
    assert await _search(herald, other_app, query="lisbon") == []


async def test_bad_searches_name_the_field(herald: Herald) -> None:
    _, app = await herald.create_app()
    later, earlier = timestamp_pb2.Timestamp(seconds=2_000_000_000), timestamp_pb2.Timestamp(seconds=1_000_000_000)
    for request, field in (
        (pb.SearchDeliveriesRequest(start_time=later, end_time=earlier), "end_time"),
        (pb.SearchDeliveriesRequest(query=" ".join(["word"] * 17)), "query"),
        (pb.SearchDeliveriesRequest(page_size=1000), "page_size"),
        (pb.SearchDeliveriesRequest(page_token="!!"), "page_token"),
    ):
        error = await rpc_error(herald.status.SearchDeliveries(request, metadata=app))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in bad_fields(error)
