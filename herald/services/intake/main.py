"""herald-intake entry point."""

from functools import partial

from herald.v1 import admin_service_pb2, admin_service_pb2_grpc, message_service_pb2, message_service_pb2_grpc

from herald.libs import runtime
from herald.libs.auth import AppKeys
from herald.libs.dispatch import DispatchLedger
from herald.libs.grpc_server import TracedServer
from herald.libs.rate_limit import RateLimiter
from herald.libs.topics import TopicRegistry
from herald.services.intake import retention
from herald.services.intake.admin import AdminService
from herald.services.intake.apps import AppRegistry
from herald.services.intake.message_ids import MessageIds
from herald.services.intake.messages import MessageService
from herald.services.intake.settings import IntakeSettings
from herald.services.intake.shedding import MarketingShedder
from herald.services.intake.status_webhooks import StatusWebhooks
from herald.services.intake.templates import TemplateStore


async def setup(rt: runtime.Runtime, settings: IntakeSettings, server: TracedServer) -> list[str]:
    keys = await AppKeys.open(rt.bus)
    apps = AppRegistry(rt.db, keys)
    await apps.publish_all()
    templates = TemplateStore(rt.db)
    limiter = await RateLimiter.open(rt.bus)
    webhooks = await StatusWebhooks.open(rt.db, rt.bus, apps, settings.webhook_allowed_hosts)
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(AdminService(apps, templates, webhooks, keys), server)
    ledger, ids = await DispatchLedger.open(rt.bus), await MessageIds.open(rt.bus)
    shedder = MarketingShedder(rt.bus.js, settings.marketing_backlog_limit)
    shedder.start()
    rt.every(settings.retention_check_seconds, partial(retention.purge, rt.db), "retention")
    rt.on_stop.append(shedder.stop)
    message_service_pb2_grpc.add_MessageServiceServicer_to_server(
        MessageService(rt.db, rt.bus, keys, templates, limiter, ledger, ids, shedder, await TopicRegistry.open(rt.bus)),
        server,
    )
    return [
        admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
        message_service_pb2.DESCRIPTOR.services_by_name["MessageService"].full_name,
    ]


def main() -> None:
    runtime.run("intake", IntakeSettings.from_env, setup)
