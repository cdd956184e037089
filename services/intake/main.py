"""herald-intake entry point."""

import grpc
from herald.v1 import admin_service_pb2, admin_service_pb2_grpc, message_service_pb2, message_service_pb2_grpc

from libs import runtime
from libs.auth import AppKeys
from services.intake.admin import AdminService, publish_all_keys
from services.intake.messages import MessageService


async def setup(rt: runtime.Runtime, server: grpc.aio.Server) -> list[str]:
    keys = await AppKeys.open(rt.bus)
    await publish_all_keys(rt.db, keys)
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminService(rt.db, keys, rt.settings.admin_token), server
    )
    message_service_pb2_grpc.add_MessageServiceServicer_to_server(MessageService(rt.db, rt.bus, keys), server)
    return [
        admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
        message_service_pb2.DESCRIPTOR.services_by_name["MessageService"].full_name,
    ]


def main() -> None:
    runtime.run("intake", setup)
