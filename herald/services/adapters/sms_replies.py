"""SMS keywords: what a recipient texts back to one of herald's numbers, through the provider's inbound-message
webhook (POST /v1/inbound/<account>, verified by the account's plug-in as its receipts are).

- STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT (the CTIA's and Twilio's opt-out words): the phone number goes on
  the suppression list for sms (SUPPRESSION_REASON_SMS_STOP, every category, as the carrier's own block is), so
  every user with that number is reached on the next channel of their chain instead.
- START, YES, UNSTOP: that STOP is lifted (not an entry an operator added).
- HELP, INFO: answered with the account's `help_text` setting.
The account's `stop_text` and `start_text` settings, when set, are texted back too (many providers confirm opt-outs
themselves, so herald says nothing by default). Any other text is only acknowledged. The router records the change
and publishes it (herald.event.suppression.added / .removed).
"""

import structlog
from aiohttp import web
from herald.v1 import suppression_service_pb2
from prometheus_client import Counter

from herald.libs.ids import new_id
from herald.libs.masking import mask
from herald.services.adapters.accounts import Accounts
from herald.services.adapters.channels.base import ReceiptRefused
from herald.services.adapters.consent import ConsentReporter
from herald.services.adapters.endpoint import callback_of

log = structlog.get_logger()

ROUTE = "/v1/inbound/{account}"
STOP = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})
_STOPPED = suppression_service_pb2.SUPPRESSION_REASON_SMS_STOP
REPLIES = Counter(
    "herald_sms_replies_total",
    "Texts recipients sent back, by provider account and keyword: stop, start, help, other, refused.",
    ["account", "keyword"],
)


class SmsReplies:
    def __init__(self, accounts: Accounts, consent: ConsentReporter) -> None:
        self._accounts = accounts
        self._consent = consent

    def routes(self) -> list[web.RouteDef]:
        return [web.post(ROUTE, self._post)]

    async def _post(self, request: web.Request) -> web.Response:
        name = request.match_info["account"]
        route = self._accounts.named(name)
        try:
            if route is None:  # answered as a forgery is, so account names cannot be probed for
                raise ReceiptRefused("no such provider account")
            text = route.provider.inbound(await callback_of(request))
        except ReceiptRefused as e:
            log.warning("sms reply refused", account=name[:64], reason=str(e))
            REPLIES.labels("" if route is None else name, "refused").inc()
            return web.Response(status=403, text="not authentic")
        words = text.text.strip().strip(".!").upper().split()
        keyword = words[0] if len(words) == 1 else ""
        source, settings = f"sms-reply:{name}", route.account.settings
        if keyword in STOP:
            await self._consent.suppress(new_id("stop"), "sms", text.sender, _STOPPED, source, f"replied {keyword}")
            answer, counted = settings.get("stop_text", ""), "stop"
        elif keyword in START:
            await self._consent.lift(new_id("start"), "sms", text.sender, _STOPPED, source)
            answer, counted = settings.get("start_text", ""), "start"
        elif keyword in HELP:
            answer, counted = settings.get("help_text", ""), "help"
        else:
            answer, counted = "", "other"
        REPLIES.labels(name, counted).inc()
        log.info("sms reply", account=name, sender=mask(text.sender), keyword=counted)
        reply = route.provider.reply(answer)
        return web.Response(text=reply.answer, content_type=reply.content_type)
