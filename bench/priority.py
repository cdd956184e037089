"""`make bench`, priority pipelines: how much does a marketing backlog delay a critical message?

Three times: with the mesh as `make up` runs it (one router and one adapters
process for every category); with the critical pipeline in a router and an
adapters process of its own (HERALD_PIPELINES); and that again with the bulk
processes at a lower CPU priority still (nice 19; every consumer runs at 10) and the critical ones at that of the
nats-server, PostgreSQL and sink they share with the bulk (0), which is what giving critical pods CPU of their own
does on a cluster, on this machine's two shared cores. Each time:
1. alone: critical messages sent one at a time, GAP apart, each timed from the
   Send call until its webhook reached the sink;
2. behind a flood: FLOOD marketing messages submitted through SendBatch first
   (so intake is idle again when measuring), then the same critical sends while
   the router and adapters work through the marketing backlog. The backlog left
   in the marketing consumers is read from JetStream before and after, to show
   the critical messages really were measured behind it.
"""

import argparse
import asyncio
import statistics
import time

import nats
from herald.v1 import common_pb2, message_service_pb2

from bench.mesh import Bench, running

FLOOD = 100_000
CRITICAL = 200
GAP = 0.1
BATCH = 100
# (critical in processes of its own, niceness of the bulk processes) -> how the table names the setup
SETUPS = {
    (False, 0): "shared by all categories",
    (True, 0): "critical has its own",
    (True, 19): "critical has its own, bulk ones at nice 19, critical at 0",
}


async def critical_latencies(bench: Bench, template_id: str, label: str, count: int) -> list[float]:
    recipient = message_service_pb2.Recipient(addresses={"webhook": bench.sink.url("/critical")})
    began: dict[str, float] = {}
    for i in range(count):
        n = f"{label}-{i}"
        request = message_service_pb2.SendRequest(template_id=template_id, recipients=[recipient], variables={"n": n})
        began[n] = time.time()  # wall clock, as the sink, a process of its own, notes arrivals
        await bench.messages.Send(request, metadata=bench.app)
        await asyncio.sleep(GAP)
    async with asyncio.timeout(60):
        arrivals = await bench.sink.wait_for(set(began))
    return [arrivals[n] - t for n, t in began.items()]


async def flood(bench: Bench, template_id: str, messages: int) -> float:
    """Submit `messages` marketing messages; how long intake took to accept them."""
    recipient = message_service_pb2.Recipient(addresses={"webhook": bench.sink.url("/marketing")})
    chunks = iter(range(0, messages, BATCH))

    async def caller() -> None:
        for first in chunks:
            entries = [
                message_service_pb2.SendRequest(
                    template_id=template_id, recipients=[recipient], variables={"n": f"m{n}"}
                )
                for n in range(first, min(first + BATCH, messages))
            ]
            await bench.messages.SendBatch(message_service_pb2.SendBatchRequest(requests=entries), metadata=bench.app)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(4)))
    return time.perf_counter() - start


async def backlog(nats_url: str) -> dict[str, int]:
    """Marketing work not yet finished: messages the router has not routed, jobs the adapters have not sent."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        router = await js.consumer_info("HERALD_MESSAGES", "router-marketing")
        adapters = await js.consumer_info("HERALD_DELIVERIES", "adapters-marketing-webhook")
        return {
            "router": router.num_pending + router.num_ack_pending,
            "adapters": adapters.num_pending + adapters.num_ack_pending,
        }
    finally:
        await nc.close()


def summary(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000, "max_ms": max(latencies) * 1000}


async def run(messages: int, critical: int, dedicated: bool, niceness: int) -> dict[str, dict[str, float]]:
    async with running(dedicated_critical=dedicated, bulk_niceness=niceness) as bench:
        urgent = await bench.template(common_pb2.CATEGORY_CRITICAL)
        bulk = await bench.template(common_pb2.CATEGORY_MARKETING)
        await critical_latencies(bench, urgent, "warm-up", 20)
        alone = summary(await critical_latencies(bench, urgent, "alone", critical))
        accepted_in = await flood(bench, bulk, messages)
        before = await backlog(bench.mesh.nats_url)
        delivered_before = await bench.sink.count("/marketing")
        behind = summary(await critical_latencies(bench, urgent, "flood", critical))
        after = await backlog(bench.mesh.nats_url)
        delivered_during = await bench.sink.count("/marketing") - delivered_before
    setup = SETUPS[(dedicated, niceness)]
    print(f"{setup}: {messages:,} marketing messages accepted in {accepted_in:.0f} s")
    print(f"  marketing backlog when measuring began: router {before['router']:,}, adapters {before['adapters']:,}")
    print(f"  marketing backlog when it ended: router {after['router']:,}, adapters {after['adapters']:,}")
    print(f"  marketing delivered meanwhile: {delivered_during:,}", flush=True)
    return {"alone": alone, "behind": behind}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=FLOOD)
    parser.add_argument("--critical", type=int, default=CRITICAL)
    args = parser.parse_args()
    rows = []
    for (dedicated, niceness), processes in SETUPS.items():
        result = asyncio.run(run(args.messages, args.critical, dedicated, niceness))
        for label, row in (("alone", result["alone"]), ("behind the marketing backlog", result["behind"])):
            rows.append(f"| {label} | {processes} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['max_ms']:.1f} |")
        print("\n".join(rows[-2:]), flush=True)  # each run's rows as soon as it ends
    print(f"{args.critical} critical sends, {GAP:g} s apart; end to end (Send call -> webhook at the sink)")
    print("| critical message | processes | p50 ms | p99 ms | max ms |")
    print("|---|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
