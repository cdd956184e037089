"""herald-router entry point."""

from functools import partial

from herald.v1 import (
    directory_service_pb2,
    directory_service_pb2_grpc,
    routing_service_pb2,
    routing_service_pb2_grpc,
    suppression_service_pb2,
    suppression_service_pb2_grpc,
    topic_service_pb2,
    topic_service_pb2_grpc,
)

from herald.libs import categories, runtime, subjects
from herald.libs.auth import AppKeys
from herald.libs.bus import each
from herald.libs.dispatch import DispatchLedger
from herald.libs.grpc_server import TracedServer
from herald.libs.topics import TopicRegistry
from herald.services.router import directory
from herald.services.router.consent import ConsentRecorder
from herald.services.router.consumers import Router
from herald.services.router.dedup import ContentDedup
from herald.services.router.directory import DirectoryService
from herald.services.router.explain import Explainer
from herald.services.router.frequency import FrequencyCaps
from herald.services.router.intake_client import IntakeClient
from herald.services.router.routing_service import RoutingService
from herald.services.router.settings import RouterSettings
from herald.services.router.suppression_list import SuppressionList
from herald.services.router.suppression_service import SuppressionService
from herald.services.router.topic_service import TopicService


async def setup(rt: runtime.Runtime, settings: RouterSettings, server: TracedServer) -> list[str]:
    directory_service_pb2_grpc.add_DirectoryServiceServicer_to_server(DirectoryService(rt.db, rt.bus), server)
    suppressions = SuppressionList(rt.db, rt.bus)
    suppression_service_pb2_grpc.add_SuppressionServiceServicer_to_server(
        SuppressionService(rt.db, suppressions), server
    )
    dedup = await ContentDedup.open(rt.bus, settings.dedup_window_seconds)
    caps = await FrequencyCaps.open(rt.db, rt.bus)
    intake = IntakeClient(settings.intake_addr, rt.settings.admin_token, rt.settings.client_tls)
    rt.on_stop.append(intake.close)
    routing_service_pb2_grpc.add_RoutingServiceServicer_to_server(
        RoutingService(rt.db, caps, Explainer(rt.db, suppressions, caps, intake)), server
    )
    topic_service_pb2_grpc.add_TopicServiceServicer_to_server(
        TopicService(rt.db, rt.bus, await AppKeys.open(rt.bus), await TopicRegistry.open(rt.bus), intake), server
    )
    router = Router(rt.db, rt.bus, await DispatchLedger.open(rt.bus), suppressions, dedup, caps)
    for category in settings.pipelines:
        pipeline = categories.PIPELINES[category]
        for stream, durable, subject, handler in router.subscriptions(category):
            await rt.bus.consume(stream, durable, subject, each(handler), batch=pipeline.batch, rank=pipeline.rank)
    await rt.bus.consume(
        subjects.MESSAGES_STREAM, "router-cancel", subjects.MESSAGE_CANCELLED, each(router.on_cancelled)
    )
    await rt.bus.consume(
        subjects.EVENTS_STREAM,
        "router-dead-addresses",
        subjects.ADDRESS_DEAD,
        each(partial(directory.mark_dead, rt.db)),
    )
    consent = ConsentRecorder(rt.db, rt.bus, suppressions, settings.soft_bounce_limit, settings.soft_bounce_window_days)
    await rt.bus.consume(subjects.MESSAGES_STREAM, "router-consent", subjects.CONSENT, each(consent.handle))
    return [
        directory_service_pb2.DESCRIPTOR.services_by_name["DirectoryService"].full_name,
        routing_service_pb2.DESCRIPTOR.services_by_name["RoutingService"].full_name,
        topic_service_pb2.DESCRIPTOR.services_by_name["TopicService"].full_name,
        suppression_service_pb2.DESCRIPTOR.services_by_name["SuppressionService"].full_name,
    ]


def main() -> None:
    runtime.run("router", RouterSettings.from_env, setup)
