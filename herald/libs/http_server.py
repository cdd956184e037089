"""The one way a binary serves HTTP beside gRPC (Prometheus metrics, providers' delivery receipts)."""

import ssl

from aiohttp import web

from herald.libs.errors import cannot_listen


async def serve(app: web.Application, addr: str, tls: ssl.SSLContext | None = None) -> web.AppRunner:
    """Serve `app` on `addr` (host:port) until the returned runner's cleanup(); HTTPS only when `tls` is given.
    An address that cannot be listened on raises CannotStart."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = addr.rpartition(":")
    try:
        # aiohttp leaves SO_REUSEPORT off: an address another process listens on is refused, not shared.
        await web.TCPSite(runner, host, int(port), ssl_context=tls).start()
    except OSError as e:
        await runner.cleanup()
        raise cannot_listen(addr, e) from e
    return runner
