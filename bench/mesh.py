"""What every benchmark starts with: the mesh on this machine, a webhook sink, an app and its templates."""

import asyncio
import json
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import grpc
from aiohttp import web
from herald.v1 import admin_service_pb2, admin_service_pb2_grpc, common_pb2, message_service_pb2_grpc

from libs.localmesh import Binary, Mesh, free_port

ADMIN = secrets.token_urlsafe(16)


class Sink:
    """Counts webhook POSTs per path, notes when each numbered body ({"n": ...}) arrived, and signals when
    the expected number arrived."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.arrivals: dict[str, float] = {}
        self.expected = 0
        self.done = asyncio.Event()
        self._arrived = asyncio.Condition()
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def expect(self, n: int) -> None:
        self.counts, self.expected = {}, n
        self.done.clear()

    async def wait_for(self, numbers: set[str]) -> None:
        """Until every body numbered in `numbers` has arrived."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: numbers <= self.arrivals.keys())

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path}", self._hit)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _hit(self, request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.perf_counter()
        self.arrivals[json.loads(body)["n"]] = arrived
        self.counts[request.path] = self.counts.get(request.path, 0) + 1
        if sum(self.counts.values()) >= self.expected:
            self.done.set()
        async with self._arrived:
            self._arrived.notify_all()
        return web.Response(status=204)


@dataclass(frozen=True)
class Bench:
    mesh: Mesh
    sink: Sink
    channel: grpc.aio.Channel
    # Metadata carrying the app's API key.
    app: tuple[tuple[str, str], ...]

    @cached_property
    def messages(self) -> message_service_pb2_grpc.MessageServiceStub:
        return message_service_pb2_grpc.MessageServiceStub(self.channel)

    async def template(self, category: common_pb2.Category.ValueType) -> str:
        template_id = f"bench-{secrets.token_hex(4)}"
        template = admin_service_pb2.Template(
            template_id=template_id,
            category=category,
            contents=[common_pb2.ChannelContent(channel="webhook", body='{"n": "{{ n }}"}')],
        )
        await admin_service_pb2_grpc.AdminServiceStub(self.channel).CreateTemplate(
            admin_service_pb2.CreateTemplateRequest(template=template), metadata=_bearer(ADMIN)
        )
        return template_id


@asynccontextmanager
async def running(dedicated_critical: bool = False, bulk_niceness: int = 0) -> AsyncIterator[Bench]:
    """The bundled nats-server, the four binaries (SQLite unless HERALD_DATABASE_URL is set) and a sink;
    with `dedicated_critical`, one more router and adapters process take the critical pipeline, which the
    first ones leave to them (HERALD_PIPELINES). `bulk_niceness` lowers the CPU priority of the processes that
    carry only bulk work (router and adapters for notification and marketing, feedback), as giving critical
    pods CPU of their own does on a cluster."""
    with tempfile.TemporaryDirectory(prefix="herald-bench-") as tmp:
        mesh = Mesh(
            Path(tmp),
            env={
                "HERALD_ADMIN_TOKEN": ADMIN,
                "HERALD_WEBHOOK_SIGNING_SECRET": secrets.token_urlsafe(16),
                "HERALD_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
                "HERALD_DATABASE_URL": os.environ.get("HERALD_DATABASE_URL", ""),
                "HERALD_PIPELINES": "notification,marketing" if dedicated_critical else "",
            },
        )
        if dedicated_critical:
            for service in ("router", "adapters"):
                first = mesh.binaries[service]
                env = {**first.env, "HERALD_PIPELINES": "critical"}
                log = first.log_path.with_name(f"{service}-critical.log")
                mesh.binaries[f"{service}-critical"] = Binary(service, f"127.0.0.1:{free_port()}", env, log)
        sink = Sink()
        await sink.start()
        await mesh.start()
        if dedicated_critical and bulk_niceness:
            for service in ("router", "adapters", "feedback"):
                renice(mesh.binaries[service], bulk_niceness)
        try:
            async with grpc.aio.insecure_channel(mesh.addr("intake")) as channel:
                app = await admin_service_pb2_grpc.AdminServiceStub(channel).CreateApp(
                    admin_service_pb2.CreateAppRequest(name="bench"), metadata=_bearer(ADMIN)
                )
                yield Bench(mesh, sink, channel, _bearer(app.api_key))
        finally:
            await mesh.stop()
            await sink.stop()


def renice(binary: Binary, niceness: int) -> None:
    """Every thread of the process: on Linux a nice value belongs to a thread, and the binaries run several."""
    assert binary.proc is not None
    for task in Path(f"/proc/{binary.proc.pid}/task").iterdir():
        os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
