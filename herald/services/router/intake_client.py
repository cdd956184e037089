"""The router's view of intake's apps and templates, asked over intake's AdminService with the admin token.

Only the Explain RPC needs them: a real delivery carries its template and the
app's settings inside the message.
"""

from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc
from herald.v1 import admin_service_pb2, admin_service_pb2_grpc

from herald.libs.errors import HeraldError, NotFound, Unavailable
from herald.libs.tls import ClientTls, grpc_channel

TIMEOUT_SECONDS = 5.0
T = TypeVar("T")


class IntakeClient:
    def __init__(self, addr: str, admin_token: str, tls: ClientTls | None) -> None:
        self._addr = addr
        self._channel = grpc_channel(addr, tls)
        self._admin = admin_service_pb2_grpc.AdminServiceStub(self._channel)
        self._call: dict[str, Any] = {
            "metadata": (("authorization", f"Bearer {admin_token}"),),
            "timeout": TIMEOUT_SECONDS,
        }

    async def app(self, app_id: str) -> admin_service_pb2.App:
        app: admin_service_pb2.App = await self._ask(
            self._admin.GetApp(admin_service_pb2.GetAppRequest(app_id=app_id), **self._call)
        )
        return app

    async def template(self, template_id: str) -> admin_service_pb2.Template:
        template: admin_service_pb2.Template = await self._ask(
            self._admin.GetTemplate(admin_service_pb2.GetTemplateRequest(template_id=template_id), **self._call)
        )
        return template

    async def close(self) -> None:
        await self._channel.close()

    async def _ask(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as e:
            raise _mapped(e, self._addr) from e


def _mapped(error: grpc.aio.AioRpcError, addr: str) -> HeraldError:
    if error.code() == grpc.StatusCode.NOT_FOUND:
        return NotFound(error.details() or "not found")
    return Unavailable(f"herald-intake at {addr} could not answer ({error.code().name}); retry")
