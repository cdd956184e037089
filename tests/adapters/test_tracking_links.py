"""How an e-mail's HTML is instrumented for tracking, and which tokens the endpoint accepts: every http(s) link to
a host the template's author wrote rewritten (other links and the text kept), the pixel before </body>, nothing
without the template's consent or without a configured endpoint; a token verifies only unchanged, under the key
that signed it, for its kind, and only until it expires."""

import secrets
import time
from typing import cast
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from herald.internal.v1 import work_pb2
from herald.libs.bus import Bus
from herald.libs.store import Database
from herald.services.adapters.tracking import Expired, Tracker

BASE = "https://t.example.com"
KEY, OTHER_KEY = secrets.token_urlsafe(16), secrets.token_urlsafe(16)


def _tracker(key: str = KEY, ttl_days: int = 30) -> Tracker:
    return Tracker(cast(Database, None), cast(Bus, None), BASE, key, ttl_days)


def _job(track_opens: bool = False, track_clicks: bool = False, retention: int = 0) -> work_pb2.DeliveryJob:
    html = (
        '<html><body><a href="https://a.example/x?y=1&amp;z=2">A</a> <a class="b" href=\'http://b.example/\'>B</a>'
        ' <a href="mailto:help@example.com">mail</a></body></html>'
    )
    return work_pb2.DeliveryJob(
        delivery_id="msg_1.0",
        channel="email",
        html_body=html,
        track_opens=track_opens,
        track_clicks=track_clicks,
        click_origins=["https://a.example", "http://b.example"],
        content_retention_days=retention,
    )


def test_links_and_pixel_are_rewritten_only_as_the_template_asks() -> None:
    tracker = _tracker()
    both = tracker.tracked_html(_job(track_opens=True, track_clicks=True))
    assert both.count(f"{BASE}/v1/t/c/") == 2 and "a.example" not in both and "b.example" not in both
    assert 'href="mailto:help@example.com"' in both and ">A</a>" in both and 'class="b"' in both
    assert both.index(f"{BASE}/v1/t/o/") < both.index("</body>")
    clicks_only = tracker.tracked_html(_job(track_clicks=True))
    assert "/v1/t/o/" not in clicks_only and clicks_only.count("/v1/t/c/") == 2
    untouched = _job()
    assert tracker.tracked_html(untouched) == untouched.html_body
    off = _tracker(key="")
    asked = _job(track_opens=True, track_clicks=True)
    assert off.tracked_html(asked) == asked.html_body


def test_a_token_verifies_only_as_signed() -> None:
    tracker = _tracker()
    html = tracker.tracked_html(_job(track_opens=True, track_clicks=True))
    click = html.split(f"{BASE}/v1/t/c/")[1].split('"')[0]
    pixel = html.split(f"{BASE}/v1/t/o/")[1].split('"')[0]
    assert tracker._verified(click, "c") == ("msg_1.0", "https://a.example/x?y=1&z=2")  # the HTML entity undone
    assert tracker._verified(pixel, "o") == ("msg_1.0", "")
    assert tracker._verified(pixel, "c") is None  # an open token names no URL to send anyone to
    payload, _, signature = click.partition(".")
    assert tracker._verified(f"{payload[:-1]}A.{signature}", "c") is None
    assert tracker._verified(f"{payload}.{signature[::-1]}", "c") is None
    assert _tracker(key=OTHER_KEY)._verified(click, "c") is None
    for junk in ("", ".", "no-dot", "%%%.%%%"):
        assert tracker._verified(junk, "c") is None


def test_only_links_to_hosts_the_author_wrote_are_tracked() -> None:
    job = _job(track_clicks=True)
    job.html_body += '<a href="https://evil.example/x">E</a><a href="https://a.example.evil.example/">F</a>'
    html = _tracker().tracked_html(job)
    assert html.count(f"{BASE}/v1/t/c/") == 2
    assert 'href="https://evil.example/x"' in html and 'href="https://a.example.evil.example/"' in html


@pytest.mark.parametrize(("ttl_days", "retention", "works_for_days"), [(30, 0, 30), (30, 7, 7), (5, 90, 5)])
def test_a_token_expires_after_the_ttl_or_the_apps_retention(
    ttl_days: int, retention: int, works_for_days: int
) -> None:
    tracker = _tracker(ttl_days=ttl_days)
    html = tracker.tracked_html(_job(track_opens=True, track_clicks=True, retention=retention))
    click = html.split(f"{BASE}/v1/t/c/")[1].split('"')[0]
    pixel = html.split(f"{BASE}/v1/t/o/")[1].split('"')[0]
    later = time.time() + works_for_days * 86400
    with mock.patch("time.time", return_value=later - 60):
        assert tracker._verified(click, "c") == ("msg_1.0", "https://a.example/x?y=1&z=2")
    with mock.patch("time.time", return_value=later + 60):
        for token, kind in ((click, "c"), (pixel, "o")):
            with pytest.raises(Expired):
                tracker._verified(token, kind)


async def test_the_endpoint_answers_an_expired_link_with_a_page_not_a_redirect() -> None:
    tracker = _tracker(ttl_days=1)
    html = tracker.tracked_html(_job(track_opens=True, track_clicks=True))
    click = html.split(f"{BASE}/v1/t/c/")[1].split('"')[0]
    app = web.Application()
    app.add_routes(tracker.routes())
    async with TestClient(TestServer(app)) as client:
        with mock.patch("time.time", return_value=time.time() + 2 * 86400):
            answer = await client.get(f"/v1/t/c/{click}", allow_redirects=False)
            assert answer.status == 410 and "Location" not in answer.headers
            assert "expired" in await answer.text()
