"""herald-gateway entry point: uvicorn serves the HTTP edge; SIGTERM stops new calls and lets those in flight
finish (a live subscription is cut at the grace's end and the browser reconnects)."""

import asyncio
import sys

import structlog
import uvicorn
import uvloop

from herald.libs import metrics, telemetry
from herald.libs.errors import CannotStart, cannot_listen
from herald.libs.tls import grpc_channel
from herald.services.gateway.app import application
from herald.services.gateway.settings import GatewaySettings

log = structlog.get_logger()

SHUTDOWN_GRACE = 10


async def serve(settings: GatewaySettings) -> None:
    channels = {name: grpc_channel(addr, settings.client_tls) for name, addr in settings.backends.items()}
    host, _, port = settings.addr.rpartition(":")
    tls = settings.server_tls
    config = uvicorn.Config(
        application(channels, settings.cors_origins, settings.max_request_bytes, settings.console),
        host=host,
        port=int(port),
        lifespan="off",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        ssl_certfile=tls.cert if tls else None,
        ssl_keyfile=tls.key if tls else None,
        ssl_ca_certs=str(tls.client_ca) if tls and tls.client_ca else None,
        ssl_cert_reqs=2 if tls and tls.client_ca else 0,
    )
    server = uvicorn.Server(config)
    try:
        config.load()
        sockets = [config.bind_socket()]
    except (OSError, SystemExit) as e:
        raise cannot_listen(settings.addr, e if isinstance(e, OSError) else OSError(str(e))) from e
    metrics_server = await metrics.serve(
        settings.metrics_addr, lambda: server.started and not server.should_exit, not_ready="shutting down"
    )
    log.info(
        "serving",
        addr=settings.addr,
        metrics=settings.metrics_addr,
        backends=dict(settings.backends),
        tls=tls is not None,
    )
    try:
        await server.serve(sockets)
    finally:
        await metrics_server.cleanup()
        await asyncio.gather(*(c.close() for c in channels.values()))
        log.info("stopped")


def main() -> None:
    try:
        settings = GatewaySettings.from_env()
    except ValueError as e:
        sys.exit(f"herald-gateway: bad configuration: {e}")
    telemetry.setup("gateway")
    try:
        uvloop.run(serve(settings))
    except CannotStart as e:
        sys.exit(f"herald-gateway: {e}")
    finally:
        telemetry.shutdown()
