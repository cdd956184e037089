"""Three nats-servers clustered with JetStream on loopback: herald's streams with three replicas, whose leaders a
test can kill."""

import asyncio
from pathlib import Path

import nats
from nats.js.errors import APIError

from devmesh.mesh import NatsServer, free_port

SIZE = 3


class NatsCluster:
    def __init__(self, data_dir: Path) -> None:
        routes = [free_port() for _ in range(SIZE)]
        self.servers = {
            f"n{i}": NatsServer(
                data_dir / f"n{i}",
                args=[
                    "--server_name", f"n{i}",
                    "--cluster_name", "herald",
                    "--cluster", f"nats://127.0.0.1:{routes[i]}",
                    "--routes", ",".join(f"nats://127.0.0.1:{p}" for j, p in enumerate(routes) if j != i),
                ],
            )
            for i in range(SIZE)
        }  # fmt: skip

    @property
    def url(self) -> str:
        return ",".join(server.url for server in self.servers.values())

    async def start(self) -> None:
        await asyncio.gather(*(server.start() for server in self.servers.values()))
        await self.wait_ready()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the cluster has a JetStream meta leader and answers JetStream requests."""
        nc = await nats.connect(servers=self.url.split(","))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        await nc.jetstream().account_info()
                        return
                    except (APIError, nats.errors.Error, TimeoutError):
                        await asyncio.sleep(0.2)
        finally:
            await nc.close()

    async def leader(self, stream: str) -> str:
        nc = await nats.connect(servers=self.url.split(","))
        try:
            info = await nc.jetstream().stream_info(stream)
        finally:
            await nc.close()
        assert info.cluster is not None and info.cluster.leader, f"{stream} has no leader"
        return info.cluster.leader

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop() for server in self.servers.values()))
