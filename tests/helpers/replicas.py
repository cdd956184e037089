"""A second process of one binary beside a running mesh, sharing its NATS and database, for replica tests."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from devmesh.mesh import Binary, Mesh, free_port


@asynccontextmanager
async def extra_replica(mesh: Mesh, service: str, env: dict[str, str] | None = None) -> AsyncIterator[Binary]:
    """`env` adds to (or overrides) the first process's environment, e.g. to export only this one's spans."""
    first = mesh.binaries[service]
    log = Path(first.log_path).with_name(f"{service}-replica-{free_port()}.log")
    replica = Binary(service, f"127.0.0.1:{free_port()}", {**first.env, **(env or {})}, log)
    replica.start()
    try:
        await replica.wait_healthy()
        yield replica
    finally:
        await replica.stop()
