"""`make bench`, the adapters stage alone: how fast one herald-adapters process delivers webhooks.

The end-to-end numbers (bench/run.py) share two cores among five processes. This one runs only the bundled
nats-server, one herald-adapters process and the sink: the adapters process is paused (SIGSTOP) while
DeliveryJobs are published onto herald.delivery.notification.webhook as the router would publish them, then
resumed, and timed until the sink has every webhook. Each delivery still takes the whole path - plan, in-flight
mark, signed POST, outcome record, status event, ack - against the real broker and database.
"""

import argparse
import asyncio
import os
import secrets
import signal
import tempfile
import time
from pathlib import Path

import nats
from herald.v1 import common_pb2, events_pb2

from bench.mesh import ADMIN, Sink
from libs import subjects
from libs.localmesh import Mesh

JOBS = 20_000
WINDOW = 512


async def publish_jobs(nats_url: str, sink: Sink, jobs: int) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    subject = subjects.delivery_job(common_pb2.CATEGORY_NOTIFICATION, "webhook")
    url = sink.url("/adapters")
    run = secrets.token_hex(4)  # a database kept from an earlier run must not know these deliveries

    async def one(n: int) -> None:
        job = events_pb2.DeliveryJob(
            delivery_id=f"msg_bench{run}{n:08d}.0",
            message_id=f"msg_bench{run}{n:08d}",
            app_id="bench",
            template_id="bench",
            category=common_pb2.CATEGORY_NOTIFICATION,
            channel="webhook",
            address=url,
            body=f'{{"n": "{n}"}}',
        )
        await js.publish(subject, job.SerializeToString(), headers={"Nats-Msg-Id": job.delivery_id})

    for first in range(0, jobs, WINDOW):
        await asyncio.gather(*(one(n) for n in range(first, min(first + WINDOW, jobs))))
    await nc.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(jobs: int) -> tuple[float, float]:
    """Delivered msg/s, and the adapters process's CPU milliseconds per delivery."""
    with tempfile.TemporaryDirectory(prefix="herald-bench-adapters-") as tmp:
        mesh = Mesh(
            Path(tmp),
            env={
                "HERALD_ADMIN_TOKEN": ADMIN,
                "HERALD_WEBHOOK_SIGNING_SECRET": "bench-signing-secret",
                "HERALD_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
                "HERALD_DATABASE_URL": os.environ.get("HERALD_DATABASE_URL", ""),
            },
        )
        adapters = mesh.binaries["adapters"]
        sink = Sink()
        await sink.start()
        assert mesh.nats is not None
        await mesh.nats.start()
        adapters.start()
        try:
            await adapters.wait_healthy()
            assert adapters.proc is not None
            os.kill(adapters.proc.pid, signal.SIGSTOP)
            sink.expect(jobs)
            try:
                await publish_jobs(mesh.nats_url, sink, jobs)
            finally:
                cpu = cpu_seconds(adapters.proc.pid)
                os.kill(adapters.proc.pid, signal.SIGCONT)
            start = time.perf_counter()
            await asyncio.wait_for(sink.done.wait(), timeout=max(300, jobs / 20))
            elapsed = time.perf_counter() - start
            return jobs / elapsed, (cpu_seconds(adapters.proc.pid) - cpu) * 1000 / jobs
        finally:
            await adapters.stop()
            await mesh.nats.stop()
            await sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=JOBS)
    args = parser.parse_args()
    rate, cpu_ms = asyncio.run(run(args.jobs))
    backend = "PostgreSQL" if os.environ.get("HERALD_DATABASE_URL") else "SQLite"
    print(
        f"one herald-adapters process ({backend}): {args.jobs:,} webhooks delivered at {rate:,.0f} msg/s, "
        f"{cpu_ms:.2f} ms of its CPU per delivery"
    )


if __name__ == "__main__":
    main()
