"""SearchDeliveries: support finds what was sent by template, user, channel, state, time and the words of the
rendered content, page by page; on PostgreSQL a filtered text search over a million deliveries stays fast."""

import asyncio
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import status_service_pb2 as pb

from tests.conftest import running_mesh
from tests.helpers.client import Herald, Metadata, all_final, bad_fields, rpc_error
from tests.helpers.databases import TEST_URL
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


MILLION = 1_000_000
CITIES = [f"city{n:03d}" for n in range(100)]
WORDS = [f"product{n:03d}" for n in range(200)]


@pytest.mark.skipif(not TEST_URL, reason="the million-row search is a PostgreSQL test (HERALD_TEST_DATABASE_URL)")
async def test_a_filtered_text_search_over_a_million_deliveries_answers_within_100_ms(tmp_path: Path) -> None:
    async with running_mesh(tmp_path, "postgresql") as (mesh, herald):
        app_id, app = await herald.create_app()
        url = mesh.binaries["feedback"].env["HERALD_DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(url, autocommit=True) as conn:
            # Ten apps, 20 templates, 50,000 users, four channels, 100 cities, a delivery a second back 11 days.
            conn.execute(
                """
                INSERT INTO feedback_deliveries (delivery_id, message_id, app_id, template_id, user_id, channel,
                    state, attempts, reason, provider, create_time, update_time, content)
                SELECT 'msg_' || i || '.0', 'msg_' || i,
                    CASE WHEN i %% 10 = 0 THEN %(app)s ELSE 'app-' || (i %% 10) END,
                    't-' || (i %% 20), 'user-' || (i %% 50000),
                    (ARRAY['webhook', 'sms', 'email', 'inbox'])[1 + (i / 10) %% 4], 3, 1, '', 'p',
                    now() - make_interval(secs => i), now(),
                    'Your order ' || i || ' of ' || (%(words)s::text[])[1 + i %% 200]
                        || ' has shipped to ' || (%(cities)s::text[])[1 + (i / 40) %% 100]
                FROM generate_series(1, %(rows)s) AS i
                """,
                {"app": app_id, "words": WORDS, "cities": CITIES, "rows": MILLION},
            )
            conn.execute("ANALYZE feedback_deliveries")
            assert conn.execute("SELECT count(*) FROM feedback_deliveries").fetchone() == (MILLION,)

        week_ago = timestamp_pb2.Timestamp(seconds=int(time.time()) - 7 * 86400)
        request = pb.SearchDeliveriesRequest(query="shipped city042", channel="sms", start_time=week_ago)
        timings = []
        for _ in range(7):
            began = time.perf_counter()
            found = await herald.status.SearchDeliveries(request, metadata=app)
            timings.append(time.perf_counter() - began)
        assert len(found.deliveries) == 50 and found.next_page_token
        assert all(d.channel == "sms" and d.content.endswith("shipped to city042") for d in found.deliveries)
        assert statistics.median(timings) < 0.1, f"seconds per search: {timings}"
