"""A test-side herald client: the stubs generated from protos/, with credentials attached."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from herald.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    common_pb2,
    dead_letter_service_pb2_grpc,
    directory_service_pb2_grpc,
    inbox_service_pb2_grpc,
    message_service_pb2,
    message_service_pb2_grpc,
    provider_service_pb2,
    provider_service_pb2_grpc,
    routing_service_pb2_grpc,
    status_service_pb2,
    status_service_pb2_grpc,
    suppression_service_pb2_grpc,
    topic_service_pb2_grpc,
)

from devmesh.mesh import Mesh

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


class Herald:
    """Channels to a running mesh; `admin` metadata carries the admin token."""

    def __init__(self, mesh: Mesh, admin_token: str) -> None:
        self.admin = bearer(admin_token)
        self._channels = {s: mesh.channel(s) for s in ("intake", "router", "adapters", "feedback")}
        self.admin_stub = admin_service_pb2_grpc.AdminServiceStub(self._channels["intake"])
        self.messages = message_service_pb2_grpc.MessageServiceStub(self._channels["intake"])
        self.directory = directory_service_pb2_grpc.DirectoryServiceStub(self._channels["router"])
        self.routing = routing_service_pb2_grpc.RoutingServiceStub(self._channels["router"])
        self.topics = topic_service_pb2_grpc.TopicServiceStub(self._channels["router"])
        self.suppressions = suppression_service_pb2_grpc.SuppressionServiceStub(self._channels["router"])
        self.status = status_service_pb2_grpc.StatusServiceStub(self._channels["feedback"])
        self.providers = provider_service_pb2_grpc.ProviderServiceStub(self._channels["adapters"])
        self.dead_letters = dead_letter_service_pb2_grpc.DeadLetterServiceStub(self._channels["adapters"])
        self.inbox = inbox_service_pb2_grpc.InboxServiceStub(self._channels["adapters"])

    @asynccontextmanager
    async def provider_accounts(self, *accounts: provider_service_pb2.ProviderAccount) -> AsyncIterator[None]:
        """The accounts configured while the block runs (every adapters process uses them at once), then gone."""
        made = []
        try:
            for account in accounts:
                request = provider_service_pb2.CreateProviderAccountRequest(account=account)
                await self.providers.CreateProviderAccount(request, metadata=self.admin)
                made.append(account.name)
            yield
        finally:
            for name in made:
                delete = provider_service_pb2.DeleteProviderAccountRequest(name=name)
                await self.providers.DeleteProviderAccount(delete, metadata=self.admin)

    def channel(self, binary: str) -> grpc.aio.Channel:
        return self._channels[binary]

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._channels.values()))

    async def create_app(self, channels: tuple[str, ...] = ("webhook",), rate: float = 0) -> tuple[str, Metadata]:
        """A new app for `channels`, limited to `rate` messages a second (0: no limit): its id and API key."""
        reply = await self.admin_stub.CreateApp(
            admin_service_pb2.CreateAppRequest(
                name=f"app-{uuid.uuid4().hex[:6]}", allowed_channels=channels, rate_limit_per_second=rate
            ),
            metadata=self.admin,
        )
        return reply.app.app_id, bearer(reply.api_key)

    async def create_template(
        self,
        contents: dict[str, str],
        category: common_pb2.Category.ValueType = common_pb2.CATEGORY_NOTIFICATION,
    ) -> str:
        template_id = f"t-{uuid.uuid4().hex[:10]}"
        await self.admin_stub.CreateTemplate(
            admin_service_pb2.CreateTemplateRequest(
                template=admin_service_pb2.Template(
                    template_id=template_id,
                    category=category,
                    contents=[common_pb2.ChannelContent(channel=c, body=b) for c, b in contents.items()],
                )
            ),
            metadata=self.admin,
        )
        return template_id

    async def send(self, app: Metadata, request: message_service_pb2.SendRequest) -> str:
        reply = await self.messages.Send(request, metadata=app)
        return str(reply.message_id)

    async def send_and_wait(
        self, recipient: message_service_pb2.Recipient, channels: tuple[str, ...] = ("webhook",)
    ) -> tuple[Metadata, str, status_service_pb2.Message]:
        """A new app and template for `channels`, one Send to `recipient`, and its final status."""
        _, app = await self.create_app(channels)
        template = await self.create_template(dict.fromkeys(channels, "{}"))
        message_id = await self.send(app, message_service_pb2.SendRequest(template_id=template, recipients=[recipient]))
        return app, message_id, await self.wait_message(app, message_id, all_final)

    async def wait_message(
        self,
        app: Metadata,
        message_id: str,
        done: Callable[[status_service_pb2.Message], bool],
        timeout: float = 30,
    ) -> status_service_pb2.Message:
        """Poll GetMessage until `done` holds (status is recorded asynchronously)."""
        last: status_service_pb2.Message | None = None
        async with asyncio.timeout(timeout):
            while True:
                try:
                    last = await self.status.GetMessage(
                        status_service_pb2.GetMessageRequest(message_id=message_id), metadata=app
                    )
                    if done(last):
                        return last
                except grpc.aio.AioRpcError as e:
                    if e.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                await asyncio.sleep(0.1)


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """The error a call must fail with."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


def bad_fields(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """Field -> description from the google.rpc.BadRequest detail an INVALID_ARGUMENT must carry."""
    status = rpc_status.from_call(error)
    assert status is not None, "INVALID_ARGUMENT must carry a google.rpc.Status with details"
    fields: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields.update({v.field: v.description for v in bad.field_violations})
    return fields


def retry_delay(error: grpc.aio.AioRpcError) -> float:
    """The seconds of the google.rpc.RetryInfo detail a RESOURCE_EXHAUSTED must carry."""
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.ToTimedelta().total_seconds())
    raise AssertionError("RESOURCE_EXHAUSTED without a RetryInfo detail")


def all_final(message: status_service_pb2.Message, count: int = 1) -> bool:
    """At least `count` deliveries, none of them still pending: from the message's counts, which cover every
    delivery, not only the first page."""
    pending = (common_pb2.DELIVERY_STATE_PENDING, common_pb2.DELIVERY_STATE_SCHEDULED)
    waiting = sum(c.count for c in message.delivery_state_counts if c.state in pending)
    return message.delivery_count >= count and waiting == 0
