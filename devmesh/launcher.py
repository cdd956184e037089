"""`make up`: the mesh on this machine with embedded defaults, until Ctrl-C or SIGTERM.

Secrets the binaries need (the admin token, the webhook signing secret) are read
from the environment or, for a local run, generated once into files under
.herald/ that only the owner can read; they are never printed.
"""

import asyncio
import os
import secrets
import signal
import sys
from pathlib import Path

from devmesh.mesh import SERVICES, Mesh, keep_free
from herald.libs import ports

ADDR_VARS = {s: f"HERALD_{s.upper()}_ADDR" for s in SERVICES}
DEFAULT_ADDRS = {service: ports.grpc_addr(service) for service in ports.GRPC}


def local_secret(data_dir: Path, var: str, filename: str) -> str:
    if value := os.environ.get(var):
        return value
    path = data_dir / filename
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


async def main() -> int:
    data_dir = Path(os.environ.get("HERALD_DATA_DIR", ".herald")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "HERALD_ADMIN_TOKEN": local_secret(data_dir, "HERALD_ADMIN_TOKEN", "admin-token"),
        "HERALD_WEBHOOK_SIGNING_SECRET": local_secret(
            data_dir, "HERALD_WEBHOOK_SIGNING_SECRET", "webhook-signing-secret"
        ),
        "HERALD_INBOX_TOKEN_SECRET": local_secret(data_dir, "HERALD_INBOX_TOKEN_SECRET", "inbox-token-secret"),
        "HERALD_TRACKING_SECRET": local_secret(data_dir, "HERALD_TRACKING_SECRET", "tracking-secret"),
        "HERALD_UNSUBSCRIBE_SECRET": local_secret(data_dir, "HERALD_UNSUBSCRIBE_SECRET", "unsubscribe-secret"),
        "HERALD_RECEIPTS_ADDR": os.environ.get("HERALD_RECEIPTS_ADDR") or f"127.0.0.1:{ports.RECEIPTS}",
    }
    addrs = {s: os.environ.get(var) or DEFAULT_ADDRS[s] for s, var in ADDR_VARS.items()}
    addrs["gateway"] = os.environ.get("HERALD_GATEWAY_ADDR") or f"127.0.0.1:{ports.GATEWAY}"
    metrics_addrs = {
        s: os.environ.get(f"HERALD_{s.upper()}_METRICS_ADDR") or f"127.0.0.1:{port}"
        for s, port in ports.METRICS.items()
    }
    keep_free(env["HERALD_RECEIPTS_ADDR"], *addrs.values(), *metrics_addrs.values())
    mesh = Mesh(
        data_dir,
        env=env,
        addrs=addrs,
        nats_url=os.environ.get("HERALD_NATS_URL"),
        metrics_addrs=metrics_addrs,
        gateway=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await mesh.start()
    except (RuntimeError, TimeoutError) as e:
        print(f"herald failed to start: {e}", file=sys.stderr)
        await mesh.stop()
        return 1
    print(f"nats      {mesh.nats_url}")
    for service in SERVICES:
        print(f"{service:<9} {mesh.addr(service)}")
    print(f"gateway   {mesh.gateway_url}")
    print(f"receipts  {mesh.receipts_url('<account>')}")
    print("metrics   " + "  ".join(f"{s} {mesh.metrics_url(s)}" for s in mesh.binaries))
    print(f"logs      {data_dir / 'logs'}")
    if "HERALD_ADMIN_TOKEN" not in os.environ:
        print(f"admin token in {data_dir / 'admin-token'}")
    print("herald is up", flush=True)
    exit_code = 0
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:  # make was stopped without passing the signal on
            break
        if dead := [s for s, b in mesh.binaries.items() if not b.running]:
            print(f"herald-{dead[0]} exited; see {mesh.binaries[dead[0]].log_path}", file=sys.stderr)
            exit_code = 1
            break
        await asyncio.sleep(0.5)
    print("stopping herald", flush=True)
    await mesh.stop()
    return exit_code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
