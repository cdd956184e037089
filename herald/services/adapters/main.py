"""herald-adapters entry point."""

import asyncio
from collections.abc import Iterable, Mapping
from functools import partial

import aiohttp
import structlog
from herald.v1 import (
    common_pb2,
    dead_letter_service_pb2,
    dead_letter_service_pb2_grpc,
    inbox_service_pb2,
    inbox_service_pb2_grpc,
    provider_service_pb2,
    provider_service_pb2_grpc,
)

from herald.libs import categories, channels, http_server, runtime, subjects
from herald.libs.auth import AppKeys
from herald.libs.bus import BatchHandler, Consumers, each
from herald.libs.grpc_server import TracedServer
from herald.libs.rate_limit import RateLimiter
from herald.services.adapters import dead_letters, erasure
from herald.services.adapters.accounts import Accounts, plugins
from herald.services.adapters.consent import ConsentReporter
from herald.services.adapters.deliverer import Deliverer
from herald.services.adapters.endpoint import endpoint as outside_endpoint
from herald.services.adapters.inbox.inbox_tokens import InboxTokens
from herald.services.adapters.inbox.service import InboxService
from herald.services.adapters.inbox.wake import Waker
from herald.services.adapters.inbox.writer import InboxWriter
from herald.services.adapters.provider_service import ProviderService
from herald.services.adapters.receipts import Receipts
from herald.services.adapters.settings import AdaptersSettings
from herald.services.adapters.sms_replies import SmsReplies
from herald.services.adapters.status_webhooks import CONSUMER as STATUS_WEBHOOKS
from herald.services.adapters.status_webhooks import StatusWebhookPoster
from herald.services.adapters.tracking import Tracker
from herald.services.adapters.unsubscribe import Unsubscriber

log = structlog.get_logger()

# Per call, each account's own timeout applies (ProviderAccount.timeout_seconds); this bounds connecting.
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=120.0, connect=5.0)
# Connections kept open to providers, shared by every channel.
HTTP_CONNECTIONS = 256
# Messages with a job waiting for its retry stay pending on their consumer; this many may wait before it stops
# fetching new ones.
MAX_PENDING = 20_000
# Batches of jobs a channel's consumer has in hand at once. A batch is done when its slowest call is, then its
# outcomes are committed and published before it is acked; with one in hand the next batch's calls waited for all
# of that (a slow provider held up every job behind it), and on two cores the adapters fell behind the router and
# delivered the last of a burst alone at about 0.7 of a core. A SIGKILL may cut off the calls of both.
JOBS_IN_HAND = 2


async def setup(rt: runtime.Runtime, settings: AdaptersSettings, server: TracedServer) -> list[str]:
    http = aiohttp.ClientSession(timeout=HTTP_TIMEOUT, connector=aiohttp.TCPConnector(limit=HTTP_CONNECTIONS))
    registered = plugins()
    accounts = Accounts(rt.db, rt.bus, http, settings, registered)
    await accounts.reload()
    refresher = asyncio.create_task(accounts.refresh_forever(), name="provider-accounts")
    consent = ConsentReporter(rt.bus)
    receipts = Receipts(rt.db, rt.bus, accounts, consent)
    tracker = Tracker(rt.db, rt.bus, settings.tracking_url, settings.tracking_secret, settings.tracking_ttl_days)
    unsubscriber = Unsubscriber(consent, settings.tracking_url, settings.unsubscribe_secret)
    endpoint = outside_endpoint(
        [*receipts.routes(), *SmsReplies(accounts, consent).routes(), *tracker.routes(), *unsubscriber.routes()]
    )
    server_tls = rt.settings.server_tls
    runner = await http_server.serve(
        endpoint, settings.receipts_addr, server_tls.http_context() if server_tls else None
    )
    log.info("receiving delivery receipts, replies, opens, clicks and unsubscribes", addr=settings.receipts_addr)

    async def stop() -> None:
        await runner.cleanup()
        refresher.cancel()
        await accounts.close()
        await http.close()

    rt.on_stop.append(stop)
    rt.on_scrape.append(partial(dead_letters.count_waiting, rt.bus))
    provider_service_pb2_grpc.add_ProviderServiceServicer_to_server(
        ProviderService(rt.db, accounts, registered), server
    )
    dead_letter_service_pb2_grpc.add_DeadLetterServiceServicer_to_server(dead_letters.DeadLetterService(rt.bus), server)
    inbox_service_pb2_grpc.add_InboxServiceServicer_to_server(
        InboxService(rt.db, rt.bus, await AppKeys.open(rt.bus), InboxTokens(settings.inbox_token_secret)), server
    )
    deliverer = Deliverer(
        rt.db, rt.bus, accounts, settings.retry_backoff, await RateLimiter.open(rt.bus), tracker, unsubscriber
    )
    waker = Waker(rt.db, rt.bus)
    inbox = InboxWriter(rt.db, rt.bus, waker)
    await consume_jobs(
        rt.bus, settings.pipelines, {c: inbox.handle if c == "inbox" else deliverer.handle for c in channels.KNOWN}
    )
    for category in settings.pipelines:
        await rt.bus.consume(
            subjects.SCHEDULES_STREAM,
            f"adapters-wake-{categories.name(category)}",
            subjects.wake_due(category),
            each(waker.on_due),
            rank=categories.PIPELINES[category].rank,
        )
    await rt.bus.consume(
        subjects.EVENTS_STREAM, "adapters-erasures", subjects.USER_ERASED, each(partial(erasure.forget, rt.db))
    )
    poster = await StatusWebhookPoster.open(rt.bus, settings.webhook_allowed_hosts)
    rt.on_stop.append(poster.close)
    await rt.bus.consume(subjects.EVENTS_STREAM, STATUS_WEBHOOKS, subjects.DELIVERY_EVENTS, each(poster.handle))
    return [
        inbox_service_pb2.DESCRIPTOR.services_by_name["InboxService"].full_name,
        provider_service_pb2.DESCRIPTOR.services_by_name["ProviderService"].full_name,
        dead_letter_service_pb2.DESCRIPTOR.services_by_name["DeadLetterService"].full_name,
    ]


async def consume_jobs(
    bus: Consumers, pipelines: Iterable[common_pb2.Category.ValueType], handlers: Mapping[str, BatchHandler]
) -> None:
    """A durable consumer of delivery jobs per category of `pipelines` and channel of `handlers`, each handing its
    batches to its channel's handler."""
    for channel, handler in handlers.items():
        for category in pipelines:
            pipeline = categories.PIPELINES[category]
            await bus.consume(
                subjects.DELIVERIES_STREAM,
                f"adapters-{categories.name(category)}-{channel}",
                subjects.delivery_job(category, channel),
                handler,
                batch=pipeline.batch,
                rank=pipeline.rank,
                max_pending=MAX_PENDING,
                of_records=True,  # jobs come grouped: a batch is `batch` jobs, the calls in flight at once
                in_hand=JOBS_IN_HAND,
            )


def main() -> None:
    runtime.run("adapters", AdaptersSettings.from_env, setup)
