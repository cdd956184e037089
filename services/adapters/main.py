"""herald-adapters entry point."""

from importlib.metadata import entry_points

import aiohttp
import grpc

from libs import categories, channels, runtime, subjects
from services.adapters.channels.base import Channel, ChannelFactory
from services.adapters.deliverer import Deliverer

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10.0, connect=5.0)
# Connections kept open to providers, shared by every channel.
HTTP_CONNECTIONS = 256


def load_channels(rt: runtime.Runtime, http: aiohttp.ClientSession) -> dict[str, Channel]:
    """Instantiate every channel plug-in registered under the `herald.channels` entry-point group."""
    loaded: dict[str, Channel] = {}
    for entry in entry_points(group="herald.channels"):
        factory: ChannelFactory = entry.load()
        loaded[entry.name] = factory(rt.settings, http)
    return loaded


async def setup(rt: runtime.Runtime, server: grpc.aio.Server) -> list[str]:
    http = aiohttp.ClientSession(timeout=HTTP_TIMEOUT, connector=aiohttp.TCPConnector(limit=HTTP_CONNECTIONS))
    rt.on_stop.append(http.close)
    adapters = load_channels(rt, http)
    for channel in channels.KNOWN:
        deliverer = Deliverer(rt.db, rt.bus, channel, adapters.get(channel))
        for category in rt.settings.pipelines:
            pipeline = categories.PIPELINES[category]
            await rt.bus.consume(
                "HERALD_DELIVERIES",
                f"adapters-{categories.name(category)}-{channel}",
                subjects.delivery_job(category, channel),
                deliverer.handle,
                batch=pipeline.batch,
                rank=pipeline.rank,
            )
    return []


def main() -> None:
    runtime.run("adapters", setup)
