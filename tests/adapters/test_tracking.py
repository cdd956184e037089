"""E-mail open and click tracking over the real mesh: the relay gets HTML whose link goes through herald's signed
redirect and carries an open pixel; following the link lands on the original URL and records CLICKED once; a
tampered or borrowed token gets 403; opens and clicks show in the timeline and in GetStats."""

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import aiohttp
import trustme
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as providers
from herald.v1 import status_service_pb2 as status

from herald.libs.timeutil import now, to_timestamp
from tests.adapters.channels.email.fake_smtp import USERNAME, FakeSmtp, write_ca
from tests.conftest import PROVIDER_ENV
from tests.helpers.client import Herald, Metadata

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


@asynccontextmanager
async def _relay(herald: Herald, tmp_path: Path) -> AsyncIterator[FakeSmtp]:
    """A fake SMTP relay, herald's e-mail account while it runs."""
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
        yield relay
    finally:
        await herald.providers.DeleteProviderAccount(
            providers.DeleteProviderAccountRequest(name=name), metadata=herald.admin
        )
        await relay.stop()


async def _mailed_html(
    herald: Herald, relay: FakeSmtp, template: str, variables: dict[str, str]
) -> tuple[Metadata, str, str]:
    """Send `template` to one address from a new app: the app's key, the message id, the HTML the relay got."""
    _, app = await herald.create_app(("email",))
    message_id = await herald.send(
        app,
        msg.SendRequest(
            template_id=template,
            variables=variables,
            recipients=[msg.Recipient(addresses={"email": "ann@example.com"})],
        ),
    )
    async with asyncio.timeout(30):
        while not relay.received:
            await asyncio.sleep(0.1)
    html_part = relay.received[0].message.get_body(("html",))
    assert html_part is not None
    return app, message_id, html_part.get_content()


async def test_a_tracked_link_redirects_records_clicked_once_and_refuses_forgeries(
    herald: Herald, tmp_path: Path
) -> None:
    async with _relay(herald, tmp_path) as relay:
        template = await _template(herald)
        app, message_id, html = await _mailed_html(herald, relay, template, {})
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


PHISH = '<a href="http://127.0.0.1:1/phish">click</a><script>alert(1)</script>'


async def test_a_variable_arrives_escaped_and_only_the_authors_links_are_tracked(
    herald: Herald, tmp_path: Path
) -> None:
    html = (
        '<html><body><p>{{ note }}</p><a href="{{ url }}">Yours</a><a href="javascript:alert(1)">js</a>'
        '<a href="https://shop.example.com/orders/{{ order }}">Order</a></body></html>'
    )
    template_id = f"t-{uuid.uuid4().hex[:10]}"
    template = admin.Template(
        template_id=template_id,
        category=S.CATEGORY_NOTIFICATION,
        contents=[S.ChannelContent(channel="email", subject="Shipped", body="{{ note }}", html_body=html)],
        track_clicks=True,
    )
    await herald.admin_stub.CreateTemplate(admin.CreateTemplateRequest(template=template), metadata=herald.admin)
    variables = {"note": PHISH, "url": "http://127.0.0.1:1/phish", "order": "1042"}
    async with _relay(herald, tmp_path) as relay:
        _, _, mailed = await _mailed_html(herald, relay, template_id, variables)
    assert "<script" not in mailed and '<a href="http://127.0.0.1:1/phish">click' not in mailed
    assert "&lt;a href=&#34;http://127.0.0.1:1/phish&#34;&gt;click&lt;/a&gt;&lt;script&gt;" in mailed
    assert 'href="javascript:' not in mailed and '<a href="#">js</a>' in mailed
    # The author's link goes through herald; the one a variable named is left as it is, never vouched for.
    assert '<a href="http://127.0.0.1:1/phish">Yours</a>' in mailed
    assert len(re.findall(r"/v1/t/c/", mailed)) == 1 and "shop.example.com" not in mailed
