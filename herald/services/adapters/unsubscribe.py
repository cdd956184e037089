"""One-click unsubscribe hosted by herald (RFC 8058), on the adapters' HTTP endpoint beside the receipts.

Every notification and marketing e-mail carries `List-Unsubscribe: <HERALD_TRACKING_URL/v1/unsubscribe/<token>>`
(made here, DeliveryJob.list_unsubscribe_url of the job as sent; the e-mail plug-ins write the headers, mime.py).
The token names the recipient - the user id, or the bare address when the send named no user - and the category,
signed under HERALD_UNSUBSCRIBE_SECRET (signing.py), so nobody can unsubscribe someone else by changing an id. It
does not expire: a reader may unsubscribe from a mail years old.

- POST (what Gmail and Yahoo send on "unsubscribe", and what the confirmation page's button sends): the user is
  opted out of that category's e-mail (the router records it and publishes herald.event.unsubscribed), or, for a
  bare address, the address is suppressed for that category. 200 once JetStream holds the report.
- GET (a reader following the link in a mail client without one-click): a short page with a button that POSTs;
  a GET changes nothing, as RFC 8058 requires (mail scanners follow links).
A token that does not verify gets 403 and a page saying the link is not valid.
"""

import html

import structlog
from aiohttp import web
from herald.v1 import common_pb2, suppression_service_pb2

from herald.internal.v1 import work_pb2
from herald.libs import categories
from herald.libs.ids import new_id
from herald.services.adapters.consent import ConsentReporter
from herald.services.adapters.signing import Signer, Unsigned

log = structlog.get_logger()

ROUTE = "/v1/unsubscribe/{token}"
_USER, _ADDRESS = "u", "a"
_CHANNEL = "email"
_PAGE = (
    '<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
    "<title>{title}</title><main><h1>{title}</h1>{body}</main></html>"
)


class Unsubscriber:
    def __init__(self, consent: ConsentReporter, base_url: str, secrets: str) -> None:
        self._consent = consent
        self._base = base_url.rstrip("/")
        self._signer = Signer(secrets)
        if not self.enabled:
            log.info("herald's one-click unsubscribe off: HERALD_TRACKING_URL or HERALD_UNSUBSCRIBE_SECRET unset")

    @property
    def enabled(self) -> bool:
        return bool(self._base) and self._signer.enabled

    def url_for(self, job: work_pb2.DeliveryJob) -> str:
        """The recipient's unsubscribe URL for e-mail a reader may unsubscribe from; "" for the rest."""
        if not self.enabled or job.channel != _CHANNEL or job.category == common_pb2.CATEGORY_CRITICAL:
            return ""
        return self.url(job.category, user_id=job.user_id, address=job.address)

    def url(self, category: int, *, user_id: str = "", address: str = "") -> str:
        kind, recipient = (_USER, user_id) if user_id else (_ADDRESS, address)
        token = self._signer.sign("\n".join((kind, str(category), recipient)).encode())
        return f"{self._base}/v1/unsubscribe/{token}"

    def routes(self) -> list[web.RouteDef]:
        return [web.get(ROUTE, self._confirm), web.post(ROUTE, self._unsubscribe)]

    async def _confirm(self, request: web.Request) -> web.Response:
        found = self._verified(request.match_info["token"])
        if found is None:
            return _refused()
        what = html.escape(categories.name(found[1]))
        form = (
            f"<p>Stop receiving {what} e-mail?</p>"
            f'<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">Unsubscribe</button></form>'
        )
        return _page("Unsubscribe", form)

    async def _unsubscribe(self, request: web.Request) -> web.Response:
        found = self._verified(request.match_info["token"])
        if found is None:
            return _refused()
        kind, category, recipient = found
        key = new_id("unsub")
        if kind == _USER:
            await self._consent.opt_out(key, recipient, category, _CHANNEL)
        else:
            await self._consent.suppress(
                key,
                _CHANNEL,
                recipient,
                suppression_service_pb2.SUPPRESSION_REASON_UNSUBSCRIBED,
                "unsubscribe-link",
                category=category,
            )
        what = html.escape(categories.name(category))
        return _page("Unsubscribed", f"<p>You will receive no more {what} e-mail from us.</p>")

    def _verified(self, token: str) -> tuple[str, int, str] | None:
        if not self.enabled:
            return None
        try:
            kind, category, recipient = self._signer.verify(token).decode().split("\n", 2)
            number = int(category)
        except (Unsigned, ValueError):  # not signed, not UTF-8, not three parts
            return None
        if kind not in (_USER, _ADDRESS) or number not in categories.KNOWN or not recipient:
            return None
        return kind, number, recipient


def _page(title: str, body: str) -> web.Response:
    return web.Response(text=_PAGE.format(title=title, body=body), content_type="text/html")


def _refused() -> web.Response:
    page = _page("Link not valid", "<p>This unsubscribe link is not valid. Please use the link in the e-mail.</p>")
    page.set_status(403)
    return page
