"""`make bench`: throughput of the mesh on this machine, with the raw JetStream publish rate as the ceiling.

Starts the bundled nats-server and the four binaries (embedded SQLite unless
HERALD_DATABASE_URL is set), a local HTTP sink for the webhook channel, then:
1. publishes to a scratch stream as fast as JetStream acks (the ceiling);
2. fires Sends at intake from concurrent callers, then the same number of
   messages through SendBatch; for each, accepted msg/s (all answered), the
   p50/p99 latency of one call, and delivered msg/s end to end (all POSTed to
   the sink), both rates from the first call.
"""

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable

import nats
from herald.v1 import common_pb2, message_service_pb2
from nats.js.api import StreamConfig

from bench.alone import backend
from bench.mesh import Sink, running

BATCH = 100


async def jetstream_ceiling(url: str, messages: int, payload: int, window: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.>"]))
    data = os.urandom(payload)
    start = time.perf_counter()
    for offset in range(0, messages, window):
        await asyncio.gather(*(js.publish("bench.x", data) for _ in range(min(window, messages - offset))))
    elapsed = time.perf_counter() - start
    await js.delete_stream("BENCH")
    await nc.close()
    return messages / elapsed


async def measure(sink: Sink, messages: int, fire: Callable[[list[float]], Awaitable[None]]) -> dict[str, float]:
    """Rates for `messages` messages sent by `fire`, which appends each call's latency to the list it gets."""
    sink.expect(messages)
    latencies: list[float] = []
    start = time.perf_counter()
    await fire(latencies)
    accepted = time.perf_counter() - start
    await asyncio.wait_for(sink.done.wait(), timeout=max(300, messages / 20))
    delivered = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "accepted": messages / accepted,
        "delivered": messages / delivered,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
    }


async def run(messages: int, concurrency: int) -> dict[str, dict[str, float]]:
    async with running() as bench:
        result = {"jetstream": {"accepted": await jetstream_ceiling(bench.mesh.nats_url, 20_000, 512, 256)}}
        template_id = await bench.template(common_pb2.CATEGORY_NOTIFICATION)
        stub = bench.messages
        recipient = message_service_pb2.Recipient(addresses={"webhook": bench.sink.url("/hook")})

        def request(n: int) -> message_service_pb2.SendRequest:
            return message_service_pb2.SendRequest(
                template_id=template_id, recipients=[recipient], variables={"n": str(n)}
            )

        async def sends(latencies: list[float]) -> None:
            numbers = iter(range(messages))

            async def caller() -> None:
                for n in numbers:
                    began = time.perf_counter()
                    await stub.Send(request(n), metadata=bench.app)
                    latencies.append(time.perf_counter() - began)

            await asyncio.gather(*(caller() for _ in range(concurrency)))

        async def batches(latencies: list[float]) -> None:
            chunks = iter(range(0, messages, BATCH))

            async def caller() -> None:
                for first in chunks:
                    entries = [request(n) for n in range(first, min(first + BATCH, messages))]
                    began = time.perf_counter()
                    await stub.SendBatch(message_service_pb2.SendBatchRequest(requests=entries), metadata=bench.app)
                    latencies.append(time.perf_counter() - began)

            await asyncio.gather(*(caller() for _ in range(4)))

        result["send"] = await measure(bench.sink, messages, sends)
        result["batch"] = await measure(bench.sink, messages, batches)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    r = asyncio.run(run(args.messages, args.concurrency))
    print(f"{args.messages} messages per row, {backend()}, one process per binary, {os.cpu_count()} cores")
    print("| path | accepted msg/s | call p50 ms | call p99 ms | delivered msg/s |")
    print("|---|---:|---:|---:|---:|")
    print(f"| JetStream publish, raw (ceiling) | {r['jetstream']['accepted']:,.0f} | | | |")
    for name, label in (
        ("send", f"Send, {args.concurrency} concurrent callers"),
        ("batch", f"SendBatch of {BATCH}, 4 callers"),
    ):
        row = r[name]
        rates = f"{row['accepted']:,.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['delivered']:,.0f}"
        print(f"| {label} | {rates} |")


if __name__ == "__main__":
    main()
