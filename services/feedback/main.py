"""herald-feedback entry point."""

import grpc
from herald.v1 import status_service_pb2, status_service_pb2_grpc

from libs import runtime, subjects
from libs.auth import AppKeys
from services.feedback.status import StatusService
from services.feedback.timeline import Timeline


async def setup(rt: runtime.Runtime, server: grpc.aio.Server) -> list[str]:
    status_service_pb2_grpc.add_StatusServiceServicer_to_server(
        StatusService(rt.db, await AppKeys.open(rt.bus), rt.settings.admin_token), server
    )
    timeline = Timeline(rt.db)
    await rt.bus.consume("HERALD_MESSAGES", "feedback-messages", subjects.EVERY_MESSAGE_ACCEPTED, timeline.on_messages)
    await rt.bus.consume("HERALD_EVENTS", "feedback-events", subjects.DELIVERY_EVENTS, timeline.on_events)
    return [status_service_pb2.DESCRIPTOR.services_by_name["StatusService"].full_name]


def main() -> None:
    runtime.run("feedback", setup)
