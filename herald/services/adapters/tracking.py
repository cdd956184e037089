"""E-mail open and click tracking (Template.track_opens, track_clicks), on the adapters' HTTP endpoint beside the
delivery receipts.

As an e-mail goes out, its HTML gets a 1x1 image at GET /v1/t/o/<token> (opening the mail loads it: OPENED) and
each http(s) link the template's author wrote becomes GET /v1/t/c/<token> (following it records CLICKED, then
redirects to the original). Only links to a scheme://host written in the template's own HTML are tracked
(DeliveryJob.click_origins): a link that came from a variable is left as it is, so herald's redirect never
vouches for a destination a sender's data chose. A token carries the delivery id, its expiry and the original URL,
signed under HERALD_TRACKING_SECRET (signing.py): it cannot be forged, so the endpoint redirects only to URLs herald
itself rewrote - it is no open redirect - and a token that does not verify gets 403. Tokens expire after
HERALD_TRACKING_TTL_DAYS, or the app's content retention if shorter: an expired one gets 410 and a page saying
so, never a redirect. The event id is the delivery's and the state's, so a second open or click records nothing
new. Tracking is off while HERALD_TRACKING_URL (the endpoint's public address) or the secret is unset.
"""

import base64
import html
import re
import time
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from herald.v1 import common_pb2

from herald.internal.v1 import work_pb2
from herald.libs import events
from herald.libs.bus.interfaces import Publisher
from herald.libs.store import Database
from herald.services.adapters import tables
from herald.services.adapters.signing import Signer, Unsigned

log = structlog.get_logger()

OPEN_ROUTE = "/v1/t/o/{token}"
CLICK_ROUTE = "/v1/t/c/{token}"
# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# An <a> element's href holding an absolute http(s) URL, quoted either way.
_LINK = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"'\s<>]+)\2""", re.IGNORECASE)
_OPEN, _CLICK = "o", "c"
EXPIRED_PAGE = (
    "<!doctype html><title>Link expired</title><p>This link has expired. Links in e-mails work for a limited time;"
    " please go to the site directly.</p>"
)


class Expired(Exception):
    """A token herald signed, past its expiry."""


class Tracker:
    def __init__(self, db: Database, bus: Publisher, base_url: str, secrets: str, ttl_days: int) -> None:
        self._db = db
        self._bus = bus
        self._base = base_url.rstrip("/")
        self._signer = Signer(secrets)
        self._ttl_days = ttl_days
        if not self.enabled:
            log.info("e-mail open and click tracking off: HERALD_TRACKING_URL or HERALD_TRACKING_SECRET unset")

    @property
    def enabled(self) -> bool:
        return bool(self._base) and self._signer.enabled

    def tracked_html(self, job: work_pb2.DeliveryJob) -> str:
        """The job's HTML as it is sent: with tracked links and the open pixel, as its template asks."""
        if not self.enabled or not job.html_body or not (job.track_opens or job.track_clicks):
            return job.html_body
        body = job.html_body
        days = min(self._ttl_days, job.content_retention_days or self._ttl_days)
        expires = int(time.time()) + days * 86400
        if job.track_clicks:
            origins = frozenset(job.click_origins)

            def tracked(link: re.Match[str]) -> str:
                url = html.unescape(link[3])
                if _origin(url) not in origins:
                    return link[0]
                return f"{link[1]}{link[2]}{self._url(_CLICK, job.delivery_id, expires, url)}{link[2]}"

            body = _LINK.sub(tracked, body)
        if job.track_opens:
            pixel = f'<img src="{self._url(_OPEN, job.delivery_id, expires, "")}" width="1" height="1" alt="">'
            end = body.lower().rfind("</body>")
            body = body[:end] + pixel + body[end:] if end >= 0 else body + pixel
        return body

    def routes(self) -> list[web.RouteDef]:
        return [web.get(OPEN_ROUTE, self._opened), web.get(CLICK_ROUTE, self._clicked)]

    async def _opened(self, request: web.Request) -> web.Response:
        try:
            found = self._verified(request.match_info["token"], _OPEN)
        except Expired:
            return web.Response(status=410, text="expired")
        if found is None:
            return web.Response(status=403, text="not a link herald made")
        await self._record(found[0], common_pb2.DELIVERY_STATE_OPENED)
        return web.Response(body=PIXEL, content_type="image/gif", headers={"Cache-Control": "no-store"})

    async def _clicked(self, request: web.Request) -> web.Response:
        try:
            found = self._verified(request.match_info["token"], _CLICK)
        except Expired:
            return web.Response(status=410, text=EXPIRED_PAGE, content_type="text/html")
        if found is None:
            return web.Response(status=403, text="not a link herald made")
        delivery_id, url = found
        await self._record(delivery_id, common_pb2.DELIVERY_STATE_CLICKED)
        raise web.HTTPFound(url)

    async def _record(self, delivery_id: str, state: common_pb2.DeliveryState.ValueType) -> None:
        """Publish the open or click; the mail reached its reader, so an escalation step waiting on it stops."""
        async with self._db.session.begin() as session:
            record = await session.get(tables.Delivery, delivery_id)
            if record is None:  # purged, or erased: the reader still gets the image or the page
                return
            await session.execute(tables.reached([delivery_id]))
        await events.publish(self._bus, events.event(record.job(), state))

    def _url(self, kind: str, delivery_id: str, expires: int, url: str) -> str:
        token = self._signer.sign("\n".join((kind, delivery_id, str(expires), url)).encode())
        return f"{self._base}/v1/t/{kind}/{token}"

    def _verified(self, token: str, kind: str) -> tuple[str, str] | None:
        """(delivery id, URL) of a token herald signed for `kind`; None for anything else (tokens made before they
        expired included); Expired past its expiry."""
        if not self.enabled:
            return None
        try:
            found_kind, delivery_id, expires, url = self._signer.verify(token).decode().split("\n", 3)
            expired = int(expires) < time.time()
        except (Unsigned, ValueError):  # not signed, not UTF-8, not four parts, no expiry
            return None
        if found_kind != kind:
            return None
        if expired:
            raise Expired
        return delivery_id, url


def _origin(url: str) -> str:
    """A URL's scheme://host[:port], lower-cased as DeliveryJob.click_origins are; "" for no URL."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()
