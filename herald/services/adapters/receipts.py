"""Delivery receipts: the HTTP endpoint providers post their delivery reports to.

POST /v1/receipts/<account>: the account's provider plug-in checks that the request is authentic (Twilio's
signature, the secret token in Alibaba's address) and reads it. Each report names the provider's message id,
which the delivery records map back to a delivery; a DELIVERED or FAILED status event goes out, and only once
JetStream holds it does the provider get its 200 - an answer it does not get makes it post again. Providers
repeat reports; the event id (delivery, state, attempt) makes a repeat change nothing.

E-mail providers also report on the address (AddressReport): a hard bounce puts it on the suppression list, a
soft bounce counts towards that, a complaint opts the delivery's user out of marketing e-mail (or, for a delivery
to a bare address, suppresses the address for marketing) - each a ConsentReport for the router (consent.py), sent
before the provider's 200 as well.

Each request's server span (endpoint.py) is linked to the trace of every delivery it reports on, so that Jaeger
leads from a delivery's trace to its receipt and back.
"""

import structlog
from aiohttp import web
from herald.v1 import common_pb2, suppression_service_pb2
from prometheus_client import Counter
from sqlalchemy import select

from herald.internal.v1 import work_pb2
from herald.libs import events, telemetry
from herald.libs.bus import Bus
from herald.libs.store import Database
from herald.services.adapters import tables
from herald.services.adapters.accounts import Accounts
from herald.services.adapters.channels.base import AddressReport, DeliveryError, Receipt, ReceiptRefused
from herald.services.adapters.consent import ConsentReporter
from herald.services.adapters.endpoint import callback_of

log = structlog.get_logger()
ROUTE = "/v1/receipts/{account}"

# Reports by outcome: delivered or failed (recorded), unknown (no delivery of herald's has that provider id), and
# requests refused as not authentic. `account` is "" for a name that is no account, so a prober cannot grow the
# series.
RECEIPTS = Counter(
    "herald_receipts_total",
    "Delivery receipts by provider account and outcome: delivered, failed, unknown, refused; and the reports on "
    "addresses: hard_bounce, soft_bounce, complaint.",
    ["account", "outcome"],
)


class Receipts:
    def __init__(self, db: Database, bus: Bus, accounts: Accounts, consent: ConsentReporter) -> None:
        self._db = db
        self._bus = bus
        self._accounts = accounts
        self._consent = consent

    def routes(self) -> list[web.RouteDef]:
        return [web.post(ROUTE, self._post)]

    async def _post(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        route = self._accounts.named(account)
        if route is None:  # answered as a forgery is, so account names cannot be probed for
            log.warning("delivery receipt refused", account=account[:64], reason="no such provider account")
            RECEIPTS.labels("", "refused").inc()
            return web.Response(status=403, text="not authentic")
        try:
            receipts = await route.provider.receipts(await callback_of(request))
        except ReceiptRefused as e:
            log.warning("delivery receipt refused", account=account, reason=str(e))
            RECEIPTS.labels(account, "refused").inc()
            return web.Response(status=403, text="not authentic")
        except DeliveryError as e:  # what verifying needs (a signing certificate) could not be fetched: post again
            log.warning("delivery receipt not read", account=account, reason=str(e))
            return web.Response(status=503, text="try again")
        await self._record(account, route.provider.channel, receipts.reports)
        return web.Response(text=receipts.answer, content_type=receipts.content_type)

    async def _record(self, account: str, channel: str, reports: list[Receipt]) -> None:
        if not reports:
            return
        async with self._db.session() as session:
            rows = await session.scalars(
                select(tables.Delivery).where(
                    tables.Delivery.provider == account,
                    tables.Delivery.provider_message_id.in_({r.provider_message_id for r in reports} - {""}),
                )
            )
            records = {r.provider_message_id: r for r in rows}
        if delivered := {
            records[r.provider_message_id].delivery_id
            for r in reports
            if r.delivered and r.provider_message_id in records
        }:
            async with self._db.session.begin() as session:
                await session.execute(tables.reached(delivered))
        for report in reports:
            record = records.get(report.provider_message_id)
            if report.address_report is not None:
                await self._address_reported(account, channel, report, record.job() if record else None)
            if report.delivered is None:
                continue
            if record is None:
                # Not sent by herald through this account (or by a record already purged): nothing to update.
                log.info(
                    "receipt for an unknown message", account=account, provider_message_id=report.provider_message_id
                )
                RECEIPTS.labels(account, "unknown").inc()
                continue
            telemetry.link_to(record.traceparent, {"herald.delivery_id": record.delivery_id})
            job = record.job()
            state = common_pb2.DELIVERY_STATE_DELIVERED if report.delivered else common_pb2.DELIVERY_STATE_FAILED
            await events.publish(
                self._bus,
                events.event(
                    job,
                    state,
                    attempt=record.attempts,
                    reason=report.reason,
                    provider=account,
                    provider_message_id=report.provider_message_id,
                ),
            )
            RECEIPTS.labels(account, events.state_name(state)).inc()

    async def _address_reported(
        self, account: str, channel: str, report: Receipt, job: work_pb2.DeliveryJob | None
    ) -> None:
        kind = report.address_report
        address = report.address or (job.address if job else "")
        if kind is None or not address:
            return
        RECEIPTS.labels(account, kind.value).inc()
        key = f"{account}\n{report.provider_message_id}\n{kind.value}"
        match kind:
            case AddressReport.HARD_BOUNCE:
                await self._consent.suppress(
                    key,
                    channel,
                    address,
                    suppression_service_pb2.SUPPRESSION_REASON_HARD_BOUNCE,
                    account,
                    report.reason,
                )
            case AddressReport.SOFT_BOUNCE:
                await self._consent.soft_bounce(key, channel, address, account, report.reason)
            case AddressReport.COMPLAINT if job is not None and job.user_id:
                await self._consent.opt_out(key, job.user_id, common_pb2.CATEGORY_MARKETING, channel)
            case AddressReport.COMPLAINT:
                await self._consent.suppress(
                    key,
                    channel,
                    address,
                    suppression_service_pb2.SUPPRESSION_REASON_COMPLAINT,
                    account,
                    report.reason,
                    common_pb2.CATEGORY_MARKETING,
                )
