"""The life of one herald binary: connect, migrate, serve, report health, shut down gracefully."""

import asyncio
import faulthandler
import gc
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import structlog
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from herald.libs import grpc_server, metrics, reflection, telemetry
from herald.libs.audit import AuditTrail
from herald.libs.bus import Bus
from herald.libs.callers import Gate
from herald.libs.config import Settings
from herald.libs.errors import TRANSIENT, CannotStart
from herald.libs.grpc_server import TracedServer
from herald.libs.oidc import OidcVerifier
from herald.libs.store import Database

log = structlog.get_logger()

HEALTH_INTERVAL = 1.0
SHUTDOWN_GRACE = 10.0
# After the grace, each closing step (the connections, what setup opened) gets this long before the binary goes on
# without it: a connection that will not close must not keep a pod in Terminating until Kubernetes kills it.
CLOSE_BOUND = 3.0
# If the process is still alive this long after SIGTERM (a hang outside the event loop: a thread that will not
# join), it writes every thread's stack to stderr and exits 1, so the hang is diagnosable instead of a SIGKILL.
EXIT_WATCHDOG = 27.0
# Collect the youngest generation after this many net allocations (Python's default: 700), the older ones after
# this many collections of the one below. Handling a message allocates thousands of short-lived objects that
# reference counting frees; collecting every 700 cost the adapters about a tenth of their CPU (docs/benchmarks.md).
GC_THRESHOLDS = (10_000, 20, 100)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Database
    bus: Bus
    # Run at shutdown, after the consumers stopped: close what setup opened (HTTP sessions, ...).
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Run before each answer to a Prometheus scrape: refresh gauges read from elsewhere (herald/libs/metrics.py).
    on_scrape: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def every(self, seconds: float, job: Callable[[], Awaitable[object]], name: str) -> None:
        """Run `job` every `seconds`, the first time `seconds` after start-up, until shutdown (housekeeping:
        purges; a job that must have run before the binary serves is awaited in setup first). A round that meets an
        outage of the database or the bus is logged and the next round tries again; any other error is a bug and
        surfaces in the log with its stack, and the rounds go on."""

        async def rounds() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await job()
                except TRANSIENT as e:
                    log.warning("housekeeping: a dependency is away; next round retries", job=name, error=repr(e))
                except Exception:
                    log.exception("housekeeping failed", job=name)

        task = asyncio.create_task(rounds(), name=name)

        async def stop() -> None:
            task.cancel()

        self.on_stop.append(stop)


@dataclass
class Readiness:
    """Whether the binary can do its work: its NATS and database connections answered the health monitor's last
    look. One answer for grpc.health.v1 and GET /readyz (herald/libs/metrics.py), so Kubernetes and gRPC callers
    agree."""

    ready: bool = False


# A binary's own settings (herald/services/<service>/settings.py).
S = TypeVar("S")
# Registers the binary's servicers and consumers; returns the full names of the gRPC services it added.
Setup = Callable[[Runtime, S, TracedServer], Awaitable[list[str]]]


def run(service: str, own: Callable[[Mapping[str, str]], S], setup: Setup[S]) -> None:
    """Every setting, the shared ones and the binary's `own`, is read and checked before anything connects: a
    missing or malformed one stops the binary at once with one line naming its variable, not after NATS and the
    database answered."""
    try:
        settings = Settings.from_env(service)
        mine = own(os.environ)
    except ValueError as e:
        sys.exit(f"herald-{service}: bad configuration: {e}")
    telemetry.setup(service)
    try:
        # uvloop: the same asyncio, with the event loop and sockets in C - a sixth less CPU per delivery.
        uvloop.run(_serve(settings, lambda rt, server: setup(rt, mine, server)))
    except CannotStart as e:
        sys.exit(f"herald-{service}: {e}")
    finally:
        telemetry.shutdown()


async def _serve(settings: Settings, setup: Callable[[Runtime, TracedServer], Awaitable[list[str]]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    db = await Database.open(settings.database_url, settings.service, settings.database_pool_size)
    bus = await Bus.connect(
        settings.nats_url,
        f"herald-{settings.service}",
        settings.stream_replicas,
        settings.stage_retry_backoff,
        settings.nats_auth,
    )
    await bus.ensure_streams()

    server = grpc.aio.server(options=grpc_server.SERVER_OPTIONS)
    # Both addresses are taken before setup starts a consumer: a binary that cannot listen exits having taken no work.
    grpc_server.listen(
        server, settings.grpc_addr, settings.server_tls.grpc_credentials() if settings.server_tls else None
    )
    rt = Runtime(settings, db, bus)
    readiness = Readiness()
    rt.on_scrape.append(metrics.consumer_lag(bus))
    metrics_server = await metrics.serve(settings.metrics_addr, lambda: readiness.ready, rt.on_scrape)
    gate = Gate(settings.admin_token, OidcVerifier(settings.oidc) if settings.oidc else None)
    trail = AuditTrail(bus, settings.service)
    rt.on_stop.append(trail.close)
    names = await setup(rt, TracedServer(server, gate, trail))
    health = HealthServicer()
    untraced = grpc_server.GenericOnly(server)
    health_pb2_grpc.add_HealthServicer_to_server(health, untraced)
    reflection.enable(untraced, [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name])
    # Everything loaded so far (modules, protobuf descriptors, table metadata) lives until exit: keep it out of
    # every collection's scan.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    await server.start()
    monitor = asyncio.create_task(_report_health(health, readiness, names, db, bus))
    log.info(
        "serving",
        addr=settings.grpc_addr,
        services=names,
        metrics=settings.metrics_addr,
        tls=settings.server_tls is not None,
        mutual_tls=settings.server_tls is not None and settings.server_tls.client_ca is not None,
    )

    await stop.wait()
    faulthandler.dump_traceback_later(EXIT_WATCHDOG, exit=True)
    log.info("shutting down: no new work, finishing what is in flight")
    monitor.cancel()
    readiness.ready = False
    await health.enter_graceful_shutdown()
    await _bounded("in-flight work", asyncio.gather(bus.stop_consumers(), server.stop(SHUTDOWN_GRACE)), SHUTDOWN_GRACE)
    await _bounded("metrics endpoint", metrics_server.cleanup())
    for close in rt.on_stop:
        await _bounded(getattr(close, "__qualname__", repr(close)), close())
    await _bounded("NATS connection", bus.close())
    await _bounded("database pool", db.close())
    log.info("stopped")


async def _bounded(step: str, closing: Awaitable[object], extra: float = 0.0) -> None:
    """Wait for one shutdown step, at most CLOSE_BOUND (+ `extra`) seconds. Nothing is lost by leaving one
    unfinished: every message not yet acked is redelivered to whoever consumes next."""
    try:
        async with asyncio.timeout(CLOSE_BOUND + extra):
            await closing
    except TimeoutError:
        stacks = {t.get_name(): [str(f) for f in t.get_stack(limit=3)] for t in asyncio.all_tasks() if not t.done()}
        log.error("a shutdown step did not finish in time; going on without it", step=step, tasks=stacks)


async def _report_health(
    health: HealthServicer, readiness: Readiness, names: list[str], db: Database, bus: Bus
) -> None:
    """SERVING, and ready, only while both NATS and the database answer."""
    last: int | None = None
    while True:
        ok = bus.connected and await db.ping()
        readiness.ready = ok
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        if status != last:
            for name in ["", *names]:
                await health.set(name, status)
            if last is not None:
                log.warning("health changed", serving=ok)
            last = status
        await asyncio.sleep(HEALTH_INTERVAL)
