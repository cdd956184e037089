"""What every benchmark starts with: the mesh on this machine, a webhook sink, an app and its templates."""

import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import aiohttp
import grpc
from herald.v1 import admin_service_pb2, admin_service_pb2_grpc, common_pb2, message_service_pb2_grpc

from devmesh.mesh import Binary, Mesh, cpu_priority, free_port

ADMIN = secrets.token_urlsafe(16)


class Sink:
    """The webhook sink (bench/sink.py) as an OS process of its own, and what the benchmarks ask it."""

    POLL = 0.05

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.sink", "--port", str(self.port), cwd=Path(__file__).parent.parent
        )
        self._http = aiohttp.ClientSession()
        async with asyncio.timeout(30):
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError("the webhook sink (bench/sink.py) exited")
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    await self.stats()
                    return
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._http:
            await self._http.close()
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 10)

    async def stats(self) -> tuple[dict[str, int], dict[str, float]]:
        """POSTs per path, and the wall-clock time the latest POST to each path arrived."""
        assert self._http is not None
        async with self._http.get(self.url("/stats")) as response:
            stats = await response.json()
        return stats["counts"], stats["last"]

    async def count(self, path: str) -> int:
        return (await self.stats())[0].get(path, 0)

    async def wait_count(self, path: str, count: int) -> float:
        """Until `count` POSTs to `path` arrived; the wall-clock time the last of them did."""
        while True:
            counts, last = await self.stats()
            if counts.get(path, 0) >= count:
                return last[path]
            await asyncio.sleep(self.POLL)

    async def wait_for(self, numbers: set[str]) -> dict[str, float]:
        """Until every body numbered in `numbers` has arrived; the wall-clock time each did."""
        assert self._http is not None
        while True:
            async with self._http.post(self.url("/arrivals"), json=sorted(numbers)) as response:
                arrivals: dict[str, float] = await response.json()
            if len(arrivals) == len(numbers):
                return arrivals
            await asyncio.sleep(self.POLL)


@dataclass(frozen=True)
class Bench:
    mesh: Mesh
    sink: Sink
    channel: grpc.aio.Channel
    # Metadata carrying the app's API key.
    app: tuple[tuple[str, str], ...]
    app_id: str

    # herald-router's channel (DirectoryService, TopicService) and the admin token's metadata.
    router: grpc.aio.Channel
    admin: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {ADMIN}"),)

    @cached_property
    def messages(self) -> message_service_pb2_grpc.MessageServiceStub:
        return message_service_pb2_grpc.MessageServiceStub(self.channel)

    async def template(self, category: common_pb2.Category.ValueType, body: str = '{"n": "{{ n }}"}') -> str:
        """A new webhook template; its body must render to JSON numbered by "n", which the sink notes."""
        template_id = f"bench-{secrets.token_hex(4)}"
        template = admin_service_pb2.Template(
            template_id=template_id,
            category=category,
            contents=[common_pb2.ChannelContent(channel="webhook", body=body)],
        )
        await admin_service_pb2_grpc.AdminServiceStub(self.channel).CreateTemplate(
            admin_service_pb2.CreateTemplateRequest(template=template), metadata=_bearer(ADMIN)
        )
        return template_id


@asynccontextmanager
async def running(
    dedicated_critical: bool = False, bulk_niceness: int = 0, gateway: bool = False
) -> AsyncIterator[Bench]:
    """The bundled nats-server, the four binaries (SQLite unless HERALD_DATABASE_URL is set), herald-gateway with
    `gateway`, and a sink;
    with `dedicated_critical`, one more router and adapters process take the critical pipeline, which the
    first ones leave to them (HERALD_PIPELINES). `bulk_niceness` lowers the CPU priority of the processes that
    carry only bulk work (router and adapters for notification and marketing, feedback) below that of every
    consumer (devmesh.mesh.CONSUMER_NICENESS), and raises the critical ones' to that of the processes they share
    with the bulk (nats-server, PostgreSQL, the sink): as giving critical pods CPU of their own does on a cluster,
    where neither bulk work nor the broker's and the database's own outrank them."""
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
            gateway=gateway,
        )
        critical = {}
        if dedicated_critical:
            for service in ("router", "adapters"):
                first = mesh.binaries[service]
                env = {**first.env, "HERALD_PIPELINES": "critical"}
                log = first.log_path.with_name(f"{service}-critical.log")
                critical[f"{service}-critical"] = Binary(service, f"127.0.0.1:{free_port()}", env, log)
        sink = Sink()
        try:
            await sink.start()
            await mesh.start()
            # Only once the first ones have migrated: two processes migrating one new SQLite file collide.
            mesh.binaries |= critical
            for binary in critical.values():
                binary.start()
            await asyncio.gather(*(binary.wait_healthy() for binary in critical.values()))
            if dedicated_critical and bulk_niceness:
                for service in ("router", "adapters", "feedback"):
                    proc = mesh.binaries[service].proc
                    assert proc is not None
                    cpu_priority(proc.pid, bulk_niceness)
                for binary in critical.values():
                    assert binary.proc is not None
                    cpu_priority(binary.proc.pid, 0)
            async with (
                grpc.aio.insecure_channel(mesh.addr("intake")) as channel,
                grpc.aio.insecure_channel(mesh.addr("router")) as router,
            ):
                app = await admin_service_pb2_grpc.AdminServiceStub(channel).CreateApp(
                    admin_service_pb2.CreateAppRequest(name="bench"), metadata=_bearer(ADMIN)
                )
                yield Bench(mesh, sink, channel, _bearer(app.api_key), app.app.app_id, router)
        finally:
            await mesh.stop()
            await sink.stop()


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
