"""E-mail open and click tracking over the real mesh: the relay gets HTML whose link goes through herald's signed
redirect and carries an open pixel; following the link lands on the original URL and records CLICKED once; a
tampered or borrowed token gets 403; opens and clicks show in the timeline and in GetStats."""

import asyncio
import re
import uuid
from datetime import timedelta
from pathlib import Path

import aiohttp
import trustme
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as providers
from herald.v1 import status_service_pb2 as status

from libs.timeutil import now, to_timestamp
from tests.adapters.channels.email.fake_smtp import USERNAME, FakeSmtp, write_ca
from tests.conftest import PROVIDER_ENV
from tests.helpers.client import Herald

S = common_pb2
ORIGINAL = "https://shop.example.com/orders/1042?from=mail&x=1"
HTML = '<html><body><p>Shipped.</p><a href="https://shop.example.com/orders/1042?from=mail&amp;x=1">Order</a></body></html>'


async def _template(herald: Herald) -> str:
    template_id = f"t-{uuid.uuid4().hex[:10]}"
    template = admin.Template(
        template_id=template_id,
        category=S.CATEGORY_NOTIFICATION,
        contents=[S.ChannelContent(channel="email", subject="Shipped", body="Your order shipped.", html_body=HTML)],
        track_opens=True,
        track_clicks=True,
    )
    await herald.admin_stub.CreateTemplate(admin.CreateTemplateRequest(template=template), metadata=herald.admin)
    return template_id


def _tracked(html: str, kind: str) -> str:
    [found] = re.findall(rf'(http://127\.0\.0\.1:\d+/v1/t/{kind}/[^"]+)"', html)
    return str(found)


async def test_a_tracked_link_redirects_records_clicked_once_and_refuses_forgeries(
    herald: Herald, tmp_path: Path
) -> None:
    ca = trustme.CA()
    relay = FakeSmtp(ca, USERNAME, PROVIDER_ENV["HERALD_PROVIDER_TEST_SECRET"])
    await relay.start()
    name = f"smtp-{uuid.uuid4().hex[:6]}"
    account = providers.ProviderAccount(
        name=name,
        provider="smtp",
        endpoint=relay.endpoint,
        settings={
            "from": "Shop <noreply@example.com>",
            "username": USERNAME,
            "tls_ca_file": str(write_ca(ca, tmp_path)),
        },
        credentials={"password": "HERALD_PROVIDER_TEST_SECRET"},
    )
    await herald.providers.CreateProviderAccount(
        providers.CreateProviderAccountRequest(account=account), metadata=herald.admin
    )
    try:
        _, app = await herald.create_app(("email",))
        template = await _template(herald)
        message_id = await herald.send(
            app,
            msg.SendRequest(template_id=template, recipients=[msg.Recipient(addresses={"email": "ann@example.com"})]),
        )
        async with asyncio.timeout(30):
            while not relay.received:
                await asyncio.sleep(0.1)
        html_part = relay.received[0].message.get_body(("html",))
        assert html_part is not None
        html = html_part.get_content()
        click, pixel = _tracked(html, "c"), _tracked(html, "o")
        assert "shop.example.com" not in html  # the link itself goes through herald

        async with aiohttp.ClientSession() as http:
            for _ in range(2):  # a second click redirects as well, and records nothing new
                async with http.get(click, allow_redirects=False) as answer:
                    assert (answer.status, answer.headers["Location"]) == (302, ORIGINAL)
            async with http.get(pixel) as answer:
                assert (answer.status, answer.content_type) == (200, "image/gif")
            payload, _, signature = click.rpartition("/")[2].partition(".")
            forged = f"{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
            borrowed = pixel.rpartition("/")[2]  # the open token, used as a click: it names no URL to go to
            for token in (forged, borrowed, "not-a-token"):
                async with http.get(click.rpartition("/")[0] + "/" + token, allow_redirects=False) as answer:
                    assert answer.status == 403

        await herald.wait_message(app, message_id, lambda m: m.deliveries[0].state == S.DELIVERY_STATE_CLICKED)
        await asyncio.sleep(1)
        message = await herald.status.GetMessage(status.GetMessageRequest(message_id=message_id), metadata=app)
        history = [h.state for h in message.deliveries[0].history]
        assert history.count(S.DELIVERY_STATE_CLICKED) == 1 and history.count(S.DELIVERY_STATE_OPENED) == 1

        day = status.GetStatsRequest(
            start_time=to_timestamp(now() - timedelta(days=1)),
            end_time=to_timestamp(now() + timedelta(hours=1)),
            template_id=template,
        )
        [row] = (await herald.status.GetStats(day, metadata=app)).rows
        assert (row.sent, row.opened, row.clicked, row.open_rate, row.click_rate) == (1, 1, 1, 1.0, 1.0)
    finally:
        await herald.providers.DeleteProviderAccount(
            providers.DeleteProviderAccountRequest(name=name), metadata=herald.admin
        )
        await relay.stop()
