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
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import nats
from aiohttp import web
from herald.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    common_pb2,
    message_service_pb2,
    message_service_pb2_grpc,
)
from nats.js.api import StreamConfig

from libs.localmesh import Mesh

ADMIN = secrets.token_urlsafe(16)
BATCH = 100


class Sink:
    """Counts webhook POSTs and signals when the expected number arrived."""

    def __init__(self) -> None:
        self.count = 0
        self.expected = 0
        self.done = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None

    def expect(self, n: int) -> None:
        self.count, self.expected = 0, n
        self.done.clear()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hit)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _hit(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        if self.count >= self.expected:
            self.done.set()
        return web.Response(status=204)


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
    with tempfile.TemporaryDirectory(prefix="herald-bench-") as tmp:
        mesh = Mesh(
            Path(tmp),
            env={
                "HERALD_ADMIN_TOKEN": ADMIN,
                "HERALD_WEBHOOK_SIGNING_SECRET": secrets.token_urlsafe(16),
                "HERALD_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
                "HERALD_DATABASE_URL": os.environ.get("HERALD_DATABASE_URL", ""),
            },
        )
        sink = Sink()
        await sink.start()
        await mesh.start()
        try:
            result = {"jetstream": {"accepted": await jetstream_ceiling(mesh.nats_url, 20_000, 512, 256)}}
            async with grpc.aio.insecure_channel(mesh.addr("intake")) as channel:
                admin = admin_service_pb2_grpc.AdminServiceStub(channel)
                auth = (("authorization", f"Bearer {ADMIN}"),)
                app = await admin.CreateApp(admin_service_pb2.CreateAppRequest(name="bench"), metadata=auth)
                template_id = f"bench-{secrets.token_hex(4)}"
                await admin.CreateTemplate(
                    admin_service_pb2.CreateTemplateRequest(
                        template=admin_service_pb2.Template(
                            template_id=template_id,
                            category=common_pb2.CATEGORY_NOTIFICATION,
                            contents=[common_pb2.ChannelContent(channel="webhook", body='{"n": "{{ n }}"}')],
                        )
                    ),
                    metadata=auth,
                )
                stub = message_service_pb2_grpc.MessageServiceStub(channel)
                key = (("authorization", f"Bearer {app.api_key}"),)
                recipient = message_service_pb2.Recipient(addresses={"webhook": f"http://127.0.0.1:{sink.port}/hook"})

                def request(n: int) -> message_service_pb2.SendRequest:
                    return message_service_pb2.SendRequest(
                        template_id=template_id, recipients=[recipient], variables={"n": str(n)}
                    )

                async def sends(latencies: list[float]) -> None:
                    numbers = iter(range(messages))

                    async def caller() -> None:
                        for n in numbers:
                            began = time.perf_counter()
                            await stub.Send(request(n), metadata=key)
                            latencies.append(time.perf_counter() - began)

                    await asyncio.gather(*(caller() for _ in range(concurrency)))

                async def batches(latencies: list[float]) -> None:
                    chunks = iter(range(0, messages, BATCH))

                    async def caller() -> None:
                        for first in chunks:
                            entries = [request(n) for n in range(first, min(first + BATCH, messages))]
                            began = time.perf_counter()
                            await stub.SendBatch(message_service_pb2.SendBatchRequest(requests=entries), metadata=key)
                            latencies.append(time.perf_counter() - began)

                    await asyncio.gather(*(caller() for _ in range(4)))

                result["send"] = await measure(sink, messages, sends)
                result["batch"] = await measure(sink, messages, batches)
        finally:
            await mesh.stop()
            await sink.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    r = asyncio.run(run(args.messages, args.concurrency))
    backend = "PostgreSQL" if os.environ.get("HERALD_DATABASE_URL") else "SQLite"
    print(f"{args.messages} messages per row, {backend}, one process per binary, {os.cpu_count()} cores")
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
