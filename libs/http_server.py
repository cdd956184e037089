"""The one way a binary serves HTTP beside gRPC (Prometheus metrics, providers' delivery receipts)."""

import ssl

from aiohttp import web


async def serve(app: web.Application, addr: str, tls: ssl.SSLContext | None = None) -> web.AppRunner:
    """Serve `app` on `addr` (host:port) until the returned runner's cleanup(); HTTPS only when `tls` is given."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = addr.rpartition(":")
    await web.TCPSite(runner, host, int(port), ssl_context=tls).start()
    return runner
