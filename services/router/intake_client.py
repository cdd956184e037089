"""The router's view of intake's apps and templates, asked over intake's AdminService with the admin token.

Only the Explain RPC needs them: a real delivery carries its template and the
app's settings inside the message.
"""

import grpc
from herald.v1 import admin_service_pb2, admin_service_pb2_grpc

from libs.errors import HeraldError, NotFound, Unavailable

TIMEOUT_SECONDS = 5.0


class IntakeClient:
    def __init__(self, addr: str, admin_token: str) -> None:
        self._addr = addr
        self._channel = grpc.aio.insecure_channel(addr)
        self._admin = admin_service_pb2_grpc.AdminServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {admin_token}"),)

    async def app(self, app_id: str) -> admin_service_pb2.App:
        request = admin_service_pb2.GetAppRequest(app_id=app_id)
        try:
            app: admin_service_pb2.App = await self._admin.GetApp(
                request, metadata=self._metadata, timeout=TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as e:
            raise _mapped(e, self._addr) from e
        return app

    async def template(self, template_id: str) -> admin_service_pb2.Template:
        request = admin_service_pb2.GetTemplateRequest(template_id=template_id)
        try:
            template: admin_service_pb2.Template = await self._admin.GetTemplate(
                request, metadata=self._metadata, timeout=TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as e:
            raise _mapped(e, self._addr) from e
        return template

    async def close(self) -> None:
        await self._channel.close()


def _mapped(error: grpc.aio.AioRpcError, addr: str) -> HeraldError:
    if error.code() == grpc.StatusCode.NOT_FOUND:
        return NotFound(error.details() or "not found")
    return Unavailable(f"herald-intake at {addr} could not answer ({error.code().name}); retry")
