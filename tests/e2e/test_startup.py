"""A binary's own life as an operator meets it. What it refuses to start on: a nats-server too old for herald's
timers, an address another process already listens on - each exits non-zero at once, its last word naming what is
wrong. And what its probes tell the kubelet while the broker is away: alive, not ready."""

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from devmesh.mesh import Binary, NatsServer, free_port

# Where Debian's package puts nats-server (2.9 on bookworm): older than the 2.12 herald needs.
DEBIAN_NATS_SERVER = "/usr/sbin/nats-server"
# Starting on a busy two-core machine (a database, a broker, migrations) takes seconds; refusing must not take longer.
EXIT_TIMEOUT = 60.0


def _debian_nats_server() -> str:
    """Debian's nats-server, installed with apt-get when absent."""
    if not os.path.exists(DEBIAN_NATS_SERVER):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip("Debian's nats-server is not installed, and apt-get cannot install it here")
        apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, capture_output=True, env=apt, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "nats-server"],
            check=True,
            capture_output=True,
            env=apt,
            timeout=600,
        )
    return DEBIAN_NATS_SERVER


@pytest.fixture
async def nats(tmp_path: Path) -> AsyncIterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    await server.start()
    yield server
    await server.stop()


def _env(data_dir: Path, nats_url: str) -> dict[str, str]:
    """A binary's environment on its own SQLite files."""
    return {**os.environ, "HERALD_DATA_DIR": str(data_dir), "HERALD_DATABASE_URL": "", "HERALD_NATS_URL": nats_url}


async def _refusal(binary: Binary) -> tuple[int, str]:
    """Start `binary` and wait for it to exit: its exit code and the last line it wrote."""
    binary.start()
    assert binary.proc is not None
    try:
        code = await asyncio.to_thread(binary.proc.wait, EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        await binary.stop()
        pytest.fail(f"herald-{binary.service} did not refuse to start; see {binary.log_path}")
    return code, binary.log_path.read_text().strip().splitlines()[-1]


async def test_a_nats_server_older_than_2_12_is_refused_by_name(tmp_path: Path) -> None:
    broker = NatsServer(tmp_path / "nats-2.9", executable=_debian_nats_server())
    await broker.start()
    try:
        router = Binary("router", f"127.0.0.1:{free_port()}", _env(tmp_path, broker.url), tmp_path / "router.log")
        code, last = await _refusal(router)
    finally:
        await broker.stop()
    assert code != 0
    assert last.startswith("herald-router: nats-server 2.9."), last
    assert "2.12" in last, last


async def test_an_address_already_in_use_is_refused_and_its_holder_keeps_serving(
    tmp_path: Path, nats: NatsServer
) -> None:
    env = _env(tmp_path, nats.url)
    first = Binary("feedback", f"127.0.0.1:{free_port()}", env, tmp_path / "first.log")
    first.start()
    try:
        await first.wait_healthy()
        metrics_addr = first.env["HERALD_METRICS_ADDR"]
        with socket.create_server(("127.0.0.1", 0)) as held:  # another program's port
            held_addr = f"127.0.0.1:{held.getsockname()[1]}"
            taken = {
                held_addr: Binary("feedback", held_addr, env, tmp_path / "beside-another-program.log"),
                # A second copy of the running binary (a stale process, a second `make up`).
                first.addr: Binary("feedback", first.addr, env, tmp_path / "second-copy.log"),
                metrics_addr: Binary(
                    "feedback",
                    f"127.0.0.1:{free_port()}",
                    env,
                    tmp_path / "same-metrics.log",
                    metrics_addr=metrics_addr,
                ),
            }
            for addr, binary in taken.items():
                code, last = await _refusal(binary)
                assert code != 0, addr
                assert last == f"herald-feedback: {addr} is already in use", last
        assert first.running
        await first.wait_healthy(timeout=10)
        async with aiohttp.ClientSession() as http, http.get(f"http://{metrics_addr}/metrics") as reply:
            assert reply.status == 200
    finally:
        await first.stop()


async def _probe(http: aiohttp.ClientSession, binary: Binary, probe: str) -> int:
    async with http.get(f"http://{binary.env['HERALD_METRICS_ADDR']}/{probe}") as reply:
        return reply.status


async def test_while_nats_is_away_a_binary_is_alive_and_not_ready(tmp_path: Path, nats: NatsServer) -> None:
    feedback = Binary("feedback", f"127.0.0.1:{free_port()}", _env(tmp_path, nats.url), tmp_path / "feedback.log")
    feedback.start()
    try:
        await feedback.wait_healthy()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            assert (await _probe(http, feedback, "livez"), await _probe(http, feedback, "readyz")) == (200, 200)
            await nats.stop()
            async with asyncio.timeout(30):
                while await _probe(http, feedback, "readyz") != 503:
                    assert await _probe(http, feedback, "livez") == 200
                    await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # and stays so, alive
            assert (await _probe(http, feedback, "livez"), await _probe(http, feedback, "readyz")) == (200, 503)
            await nats.start()
            async with asyncio.timeout(30):
                while await _probe(http, feedback, "readyz") != 200:
                    await asyncio.sleep(0.2)
        assert feedback.running
    finally:
        await feedback.stop()
