"""`make bench`, the adapters stage alone: how fast one herald-adapters process delivers webhooks.

The end-to-end numbers (bench/run.py) share two cores among five processes. This one runs only the bundled
nats-server, one herald-adapters process and the sink: the adapters process is paused (SIGSTOP) while
DeliveryJobs are published onto herald.delivery.notification.webhook as the router would publish them, then
resumed, and timed until the sink has every webhook. The router groups a routed batch's jobs (libs/delivery_jobs.py),
so they are published GROUP at a time. Each delivery still takes the whole path - plan, in-flight
mark, signed POST, outcome record, status event, ack - against the real broker and database.
"""

import argparse
import asyncio
import functools
import secrets
from collections.abc import Awaitable, Callable

from herald.v1 import common_pb2
from nats.js import JetStreamContext

from bench.alone import alone, backend, measure
from bench.mesh import Sink
from herald.internal.v1 import work_pb2
from herald.libs import subjects
from herald.libs.bus.grouping import group_headers, grouped

JOBS = 20_000
# Jobs per published message: the router's groups are a routed batch's jobs of one channel (at most its category's
# publishing concurrency, 64 for notifications).
GROUP = 50


def job_publisher(url: str) -> Callable[[JetStreamContext, int], Awaitable[object]]:
    """Publishes the n-th group of DeliveryJobs as the router would: webhooks to the sink, each body numbered."""
    subject = subjects.delivery_job(common_pb2.CATEGORY_NOTIFICATION, "webhook")
    run = secrets.token_hex(4)  # a database kept from an earlier run must not know these deliveries

    def job(n: int) -> tuple[bytes, str]:
        found = work_pb2.DeliveryJob(
            delivery_id=f"msg_bench{run}{n:08d}.0",
            message_id=f"msg_bench{run}{n:08d}",
            app_id="bench",
            template_id="bench",
            category=common_pb2.CATEGORY_NOTIFICATION,
            channel="webhook",
            address=url,
            body=f'{{"n": "{n}"}}',
        )
        return found.SerializeToString(), found.delivery_id

    async def publish(js: JetStreamContext, n: int) -> object:
        jobs = [job(n * GROUP + k) for k in range(GROUP)]
        return await js.publish(subject, grouped(j for j, _ in jobs), headers=group_headers(jobs))

    return publish


async def run(jobs: int) -> tuple[float, float]:
    """Delivered msg/s, and the adapters process's CPU milliseconds per delivery."""
    sink = Sink()
    try:
        await sink.start()
        async with alone("adapters") as stage:
            url = sink.url("/adapters")
            groups = jobs // GROUP
            finished = functools.partial(sink.wait_count, "/adapters", groups * GROUP)
            return await measure(stage, groups, job_publisher(url), finished, GROUP)
    finally:
        await sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=JOBS)
    args = parser.parse_args()
    rate, cpu_ms = asyncio.run(run(args.jobs))
    print(
        f"one herald-adapters process ({backend()}): {args.jobs:,} webhooks delivered at {rate:,.0f} msg/s, "
        f"{cpu_ms:.2f} ms of its CPU per delivery"
    )


if __name__ == "__main__":
    main()
