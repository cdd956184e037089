"""herald-router entry point."""

import grpc
from herald.v1 import directory_service_pb2, directory_service_pb2_grpc

from libs import runtime
from libs.bus import each
from services.router.directory import DirectoryService
from services.router.fanout import SUBJECT, Fanout


async def setup(rt: runtime.Runtime, server: grpc.aio.Server) -> list[str]:
    directory_service_pb2_grpc.add_DirectoryServiceServicer_to_server(
        DirectoryService(rt.db, rt.settings.admin_token), server
    )
    await rt.bus.consume("HERALD_MESSAGES", "router", SUBJECT, each(Fanout(rt.db, rt.bus).handle))
    return [directory_service_pb2.DESCRIPTOR.services_by_name["DirectoryService"].full_name]


def main() -> None:
    runtime.run("router", setup)
