"""What the one-stage benchmarks share: the bundled nats-server and a single herald binary, paused while its
input is queued so the measurement starts with all of it waiting, and the binary's own CPU time."""

import asyncio
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js import JetStreamContext

from bench.mesh import ADMIN
from devmesh.mesh import Binary, Mesh

WINDOW = 512


@dataclass(frozen=True)
class Stage:
    binary: Binary
    nats_url: str


@asynccontextmanager
async def alone(service: str, env: Mapping[str, str] | None = None) -> AsyncIterator[Stage]:
    """nats-server and herald-`service` (SQLite unless HERALD_DATABASE_URL is set), healthy, with `env` added."""
    with tempfile.TemporaryDirectory(prefix=f"herald-bench-{service}-") as tmp:
        mesh = Mesh(
            Path(tmp),
            env={
                "HERALD_ADMIN_TOKEN": ADMIN,
                "HERALD_WEBHOOK_SIGNING_SECRET": "bench-signing-secret",
                "HERALD_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
                "HERALD_DATABASE_URL": os.environ.get("HERALD_DATABASE_URL", ""),
                **(env or {}),
            },
        )
        binary = mesh.binaries[service]
        assert mesh.nats is not None
        await mesh.nats.start()
        binary.start()
        try:
            await binary.wait_healthy()
            yield Stage(binary, mesh.nats_url)
        finally:
            await binary.stop()
            await mesh.nats.stop()


async def queue_while_paused(
    stage: Stage, count: int, publish: Callable[[JetStreamContext, int], Awaitable[object]]
) -> float:
    """Pause the binary, publish `count` messages (`publish(js, n)`, WINDOW at a time), resume it; returns
    its CPU seconds so far, to subtract from a later reading."""
    pid = stage.binary.proc.pid if stage.binary.proc else 0
    os.kill(pid, signal.SIGSTOP)
    try:
        nc = await nats.connect(stage.nats_url)
        js = nc.jetstream()
        for first in range(0, count, WINDOW):
            await asyncio.gather(*(publish(js, n) for n in range(first, min(first + WINDOW, count))))
        await nc.close()
    finally:
        cpu = cpu_seconds(pid)
        os.kill(pid, signal.SIGCONT)
    return cpu


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    stage: Stage,
    count: int,
    publish: Callable[[JetStreamContext, int], Awaitable[object]],
    finished: Callable[[], Awaitable[object]],
    records_each: int = 1,
) -> tuple[float, float]:
    """Queue `count` messages of `records_each` records while the binary is paused, resume it and time it until
    `finished()` returns: records per second, and the binary's CPU milliseconds per record."""
    cpu = await queue_while_paused(stage, count, publish)
    started = time.perf_counter()
    records = count * records_each
    await asyncio.wait_for(finished(), timeout=max(300, records / 20))
    per_second = records / (time.perf_counter() - started)
    return per_second, (cpu_seconds(stage.binary.proc.pid if stage.binary.proc else 0) - cpu) * 1000 / records


async def drained(nats_url: str, consumers: Iterable[tuple[str, str]]) -> None:
    """Until every durable consumer, (stream, name), has nothing pending or unacknowledged: the work is done, not
    just received. Listed upstream first, all idle in one pass means nothing is left anywhere, as every consumer
    acks only after publishing what it hands on."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        while True:
            infos = [await js.consumer_info(stream, name) for stream, name in consumers]
            if not any(info.num_pending or info.num_ack_pending for info in infos):
                return
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


def libpq_url(database_url: str) -> str:
    """herald's SQLAlchemy URL of PostgreSQL as psycopg connects to it directly."""
    return database_url.replace("postgresql+psycopg", "postgresql")


def backend() -> str:
    return "PostgreSQL" if os.environ.get("HERALD_DATABASE_URL") else "SQLite"
