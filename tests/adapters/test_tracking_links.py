"""How an e-mail's HTML is instrumented for tracking, and which tokens the endpoint accepts: every http(s) link
rewritten (other links and the text kept), the pixel before </body>, nothing without the template's consent or
without a configured endpoint; a token verifies only unchanged, under the key that signed it, for its kind."""

import secrets
from typing import cast

from herald.v1 import events_pb2

from libs.bus import Bus
from libs.store import Database
from services.adapters.tracking import Tracker

BASE = "https://t.example.com"
KEY, OTHER_KEY = secrets.token_urlsafe(16), secrets.token_urlsafe(16)


def _tracker(key: str = KEY) -> Tracker:
    return Tracker(cast(Database, None), cast(Bus, None), BASE, key)


def _job(track_opens: bool = False, track_clicks: bool = False) -> events_pb2.DeliveryJob:
    html = (
        '<html><body><a href="https://a.example/x?y=1&amp;z=2">A</a> <a class="b" href=\'http://b.example/\'>B</a>'
        ' <a href="mailto:help@example.com">mail</a></body></html>'
    )
    return events_pb2.DeliveryJob(
        delivery_id="msg_1.0", channel="email", html_body=html, track_opens=track_opens, track_clicks=track_clicks
    )


def test_links_and_pixel_are_rewritten_only_as_the_template_asks() -> None:
    tracker = _tracker()
    both = tracker.instrument(_job(track_opens=True, track_clicks=True)).html_body
    assert both.count(f"{BASE}/v1/t/c/") == 2 and "a.example" not in both and "b.example" not in both
    assert 'href="mailto:help@example.com"' in both and ">A</a>" in both and 'class="b"' in both
    assert both.index(f"{BASE}/v1/t/o/") < both.index("</body>")
    clicks_only = tracker.instrument(_job(track_clicks=True)).html_body
    assert "/v1/t/o/" not in clicks_only and clicks_only.count("/v1/t/c/") == 2
    untouched = _job()
    assert tracker.instrument(untouched).html_body == untouched.html_body
    off = _tracker(key="")
    asked = _job(track_opens=True, track_clicks=True)
    assert off.instrument(asked).html_body == asked.html_body


def test_a_token_verifies_only_as_signed() -> None:
    tracker = _tracker()
    html = tracker.instrument(_job(track_opens=True, track_clicks=True)).html_body
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
