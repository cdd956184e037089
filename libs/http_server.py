"""The one way a binary serves HTTP beside gRPC (Prometheus metrics, providers' delivery receipts)."""

from aiohttp import web


async def serve(app: web.Application, addr: str) -> web.AppRunner:
    """Serve `app` on `addr` (host:port) until the returned runner's cleanup()."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = addr.rpartition(":")
    await web.TCPSite(runner, host, int(port)).start()
    return runner
