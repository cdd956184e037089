"""`make bench`: throughput of the mesh on this machine, with the raw JetStream publish rate as the ceiling.

Starts the bundled nats-server and the four binaries (embedded SQLite unless
HERALD_DATABASE_URL is set), a local HTTP sink for the webhook channel, then:
1. publishes to a scratch stream as fast as JetStream acks (the ceiling);
2. fires Sends at intake with N concurrent callers (accepted msg/s);
3. waits until the sink got every webhook (delivered msg/s, end to end).
"""

import argparse
import asyncio
import os
import secrets
import tempfile
import time
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


class Sink:
    """Counts webhook POSTs; notes when the last expected one arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.done = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None

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


async def run(messages: int, concurrency: int) -> dict[str, float]:
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
        sink = Sink(messages)
        await sink.start()
        await mesh.start()
        try:
            ceiling = await jetstream_ceiling(mesh.nats_url, 20_000, 512, 256)
            async with grpc.aio.insecure_channel(mesh.addr("intake")) as channel:
                admin = admin_service_pb2_grpc.AdminServiceStub(channel)
                auth = (("authorization", f"Bearer {ADMIN}"),)
                app = await admin.CreateApp(admin_service_pb2.CreateAppRequest(name="bench"), metadata=auth)
                await admin.CreateTemplate(
                    admin_service_pb2.CreateTemplateRequest(
                        template=admin_service_pb2.Template(
                            template_id="bench",
                            category=common_pb2.CATEGORY_NOTIFICATION,
                            contents=[common_pb2.ChannelContent(channel="webhook", body='{"n": "{{ n }}"}')],
                        )
                    ),
                    metadata=auth,
                )
                stub = message_service_pb2_grpc.MessageServiceStub(channel)
                key = (("authorization", f"Bearer {app.api_key}"),)
                recipient = message_service_pb2.Recipient(addresses={"webhook": f"http://127.0.0.1:{sink.port}/hook"})
                queue: asyncio.Queue[int] = asyncio.Queue()
                for n in range(messages):
                    queue.put_nowait(n)

                async def caller() -> None:
                    while not queue.empty():
                        n = queue.get_nowait()
                        request = message_service_pb2.SendRequest(
                            template_id="bench", recipients=[recipient], variables={"n": str(n)}
                        )
                        await stub.Send(request, metadata=key)

                start = time.perf_counter()
                await asyncio.gather(*(caller() for _ in range(concurrency)))
                accepted_at = time.perf_counter()
                await asyncio.wait_for(sink.done.wait(), timeout=max(120, messages / 50))
                delivered_at = time.perf_counter()
        finally:
            await mesh.stop()
            await sink.stop()
    return {
        "jetstream_publish_per_s": ceiling,
        "accepted_per_s": messages / (accepted_at - start),
        "delivered_per_s": messages / (delivered_at - start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    result = asyncio.run(run(args.messages, args.concurrency))
    backend = "PostgreSQL" if os.environ.get("HERALD_DATABASE_URL") else "SQLite"
    print(f"| {args.messages} messages, {args.concurrency} callers, {backend} | msg/s |")
    print("|---|---:|")
    print(f"| JetStream publish, raw (ceiling) | {result['jetstream_publish_per_s']:,.0f} |")
    print(f"| accepted at intake (Send) | {result['accepted_per_s']:,.0f} |")
    print(f"| delivered end to end (webhook to local sink) | {result['delivered_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
