"""herald-router entry point."""

import grpc
from herald.v1 import directory_service_pb2, directory_service_pb2_grpc, routing_service_pb2, routing_service_pb2_grpc

from libs import runtime, subjects
from libs.bus import each
from libs.dispatch import DispatchLedger
from services.router.dedup import ContentDedup
from services.router.directory import DirectoryService
from services.router.frequency import FrequencyCaps
from services.router.routing import Router
from services.router.rules import RoutingService


async def setup(rt: runtime.Runtime, server: grpc.aio.Server) -> list[str]:
    directory_service_pb2_grpc.add_DirectoryServiceServicer_to_server(
        DirectoryService(rt.db, rt.bus, rt.settings.admin_token), server
    )
    dedup = await ContentDedup.open(rt.bus, rt.settings.dedup_window_seconds)
    caps = await FrequencyCaps.open(rt.db, rt.bus)
    routing_service_pb2_grpc.add_RoutingServiceServicer_to_server(
        RoutingService(rt.db, caps, rt.settings.admin_token), server
    )
    router = Router(rt.db, rt.bus, await DispatchLedger.open(rt.bus), dedup, caps)
    await rt.bus.consume("HERALD_MESSAGES", "router", subjects.MESSAGE_ACCEPTED, each(router.on_accepted))
    await rt.bus.consume("HERALD_SCHEDULES", "router-due", subjects.SCHEDULE_DUE, each(router.on_due))
    await rt.bus.consume("HERALD_MESSAGES", "router-cancel", subjects.MESSAGE_CANCELLED, each(router.on_cancelled))
    await rt.bus.consume("HERALD_SCHEDULES", "router-release", subjects.DELIVERY_RELEASED, each(router.on_released))
    return [
        directory_service_pb2.DESCRIPTOR.services_by_name["DirectoryService"].full_name,
        routing_service_pb2.DESCRIPTOR.services_by_name["RoutingService"].full_name,
    ]


def main() -> None:
    runtime.run("router", setup)
