"""`make bench`: what a sending team gets from the mesh on this machine, against the raw JetStream ceiling.

Each run starts the bundled nats-server, the four binaries (embedded SQLite unless HERALD_DATABASE_URL is set)
and the webhook sink (bench/sink.py), each an OS process of its own, then measures three phases:
1. JetStream ceiling: acked publishes to a scratch stream on the same nats-server;
2. SendBatch: --messages messages, 100 entries per call, --batch-callers concurrent callers;
3. Send: --send-messages messages, one per call, --send-callers concurrent callers;
4. Send to a topic: one Send to a topic of --topic-subscribers users (each in the directory, with the sink as
   their webhook address), fanned out by the router; its delivered rate is set beside SendBatch's;
5. Send over HTTP: --http-messages messages, one JSON Send per call to herald-gateway (Connect), from
   --send-callers concurrent callers on as many keep-alive HTTP/1.1 connections (aiohttp).
Every message is one a team would send: to its own user, drawn from --users ids the directory does not know
(so routing looks each up and finds nothing), at the webhook address given in the request, with variables of
its own. Per phase: accepted msg/s (until every call was answered), the p50/p99 latency of one call,
delivered msg/s end to end (from the first call until the sink had every webhook), and each process's CPU
milliseconds per message, from the first call until the messages were delivered and feedback had recorded
them all (on two shared cores a process's CPU per message varies less than the rates). Each of the --runs
(default 3, a minute or two each) starts afresh; it prints every run, then the median of each figure.
"""

import argparse
import asyncio
import functools
import os
import random
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import aiohttp
import nats
from google.protobuf import json_format
from herald.v1 import (
    common_pb2,
    directory_service_pb2,
    directory_service_pb2_grpc,
    message_service_pb2,
    topic_service_pb2,
    topic_service_pb2_grpc,
)
from nats.js.api import StreamConfig

from bench.alone import backend, cpu_seconds, drained
from bench.mesh import Bench, running
from devmesh.mesh import SERVICES

CEILING = 20_000
BATCH = 100
TEMPLATE = '{"n": "{{ n }}", "text": "Hello {{ name }}, your order {{ n }} has shipped."}'
# Every consumer a message passes on its way, upstream first (see bench.alone.drained).
PIPELINE = (
    ("HERALD_MESSAGES", "router-notification"),
    ("HERALD_MESSAGES", "router-notification-parts"),
    ("HERALD_DELIVERIES", "adapters-notification-webhook"),
    ("HERALD_MESSAGES", "feedback-messages"),
    ("HERALD_EVENTS", "feedback-events"),
)
# Whose CPU each phase reads: the binaries, the broker, the sink, and this process (the callers).
PROCESSES = (*SERVICES, "gateway", "nats-server", "sink", "callers")

Figures = dict[str, float]


async def jetstream_ceiling(url: str, messages: int, payload: int, window: int) -> float:
    """Acked publishes per second, `window` in flight: what herald's own publishes could reach at most."""
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


class Cpu:
    """Each process's CPU time (user + system, all its threads) since this was made, per message."""

    def __init__(self, bench: Bench) -> None:
        assert bench.mesh.nats is not None
        assert bench.mesh.nats.proc is not None
        self.pids = {s: b.proc.pid for s, b in bench.mesh.binaries.items() if b.proc}
        self.pids |= {"nats-server": bench.mesh.nats.proc.pid, "sink": bench.sink.pid, "callers": os.getpid()}
        self.start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def per_message(self, messages: int) -> Figures:
        return {name: (cpu_seconds(pid) - self.start[name]) * 1000 / messages for name, pid in self.pids.items()}


def requests(template_id: str, url: str, users: int, count: int) -> list[message_service_pb2.SendRequest]:
    """`count` messages, each to a user id drawn from a pool of `users` that no directory knows (new each run; the
    same draws each run)."""
    pool, draw = f"bench-{secrets.token_hex(4)}", random.Random(count)
    messages = []
    for n in range(count):
        user = draw.randrange(users)
        recipient = message_service_pb2.Recipient(user_id=f"{pool}-{user}", addresses={"webhook": url})
        variables = {"n": str(n), "name": f"Customer {user}"}
        messages.append(
            message_service_pb2.SendRequest(template_id=template_id, recipients=[recipient], variables=variables)
        )
    return messages


async def phase(
    bench: Bench, path: str, count: int, calls: Iterable[Callable[[], Awaitable[object]]], concurrency: int
) -> Figures:
    """Make `calls`, which send `count` messages to the sink's `path`, from `concurrency` callers (each takes the
    next as soon as its last was answered), and wait until every message was delivered and recorded."""
    cpu = Cpu(bench)
    latencies: list[float] = []
    pending = iter(calls)

    async def caller() -> None:
        for call in pending:
            began = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - began)

    began = time.time()  # wall clock, as the sink notes arrivals
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    accepted = time.time() - began
    async with asyncio.timeout(max(300, count / 20)):
        delivered = await bench.sink.wait_count(path, count) - began
        await drained(bench.mesh.nats_url, PIPELINE)
    recorded = time.time() - began
    if len(latencies) > 1:
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")  # never beyond the slowest call
        p50, p99 = cuts[49], cuts[98]
    else:  # one call: a topic's
        p50 = p99 = latencies[0]
    rates = {"accepted": count / accepted, "delivered": count / delivered, "recorded": count / recorded}
    return rates | {"p50": p50 * 1000, "p99": p99 * 1000} | cpu.per_message(count)


async def run(args: argparse.Namespace) -> dict[str, Figures]:
    async with running(gateway=True) as bench:
        cpu = Cpu(bench)
        ceiling = await jetstream_ceiling(bench.mesh.nats_url, CEILING, 512, 256)
        result = {"ceiling": {"accepted": ceiling} | cpu.per_message(CEILING)}
        template_id = await bench.template(common_pb2.CATEGORY_NOTIFICATION, TEMPLATE)

        async def batch(entries: list[message_service_pb2.SendRequest]) -> None:
            request = message_service_pb2.SendBatchRequest(requests=entries)
            reply = await bench.messages.SendBatch(request, metadata=bench.app)
            if refused := [r.error for r in reply.results if r.HasField("error")]:
                raise RuntimeError(f"SendBatch refused {len(refused)} of {len(entries)} entries: {refused[0]}")

        messages = requests(template_id, bench.sink.url("/batch"), args.users, args.messages)
        calls = (functools.partial(batch, messages[i : i + BATCH]) for i in range(0, len(messages), BATCH))
        result["batch"] = await phase(bench, "/batch", len(messages), calls, args.batch_callers)
        result["batch"]["of_ceiling"] = result["batch"]["accepted"] / ceiling

        messages = requests(template_id, bench.sink.url("/send"), args.users, args.send_messages)
        sends = (functools.partial(bench.messages.Send, m, metadata=bench.app) for m in messages)
        result["send"] = await phase(bench, "/send", len(messages), sends, args.send_callers)

        topic_key = await subscribed_topic(bench, bench.sink.url("/topic"), args.topic_subscribers)
        to_topic = message_service_pb2.SendRequest(
            template_id=template_id, topic=topic_key, variables={"n": "0", "name": "subscriber"}
        )
        send = functools.partial(bench.messages.Send, to_topic, metadata=bench.app)
        result["topic"] = await phase(bench, "/topic", args.topic_subscribers, [send], 1)
        result["topic"]["of_batch"] = result["topic"]["delivered"] / result["batch"]["delivered"]

        messages = requests(template_id, bench.sink.url("/http"), args.users, args.http_messages)
        bodies = [json_format.MessageToJson(m, indent=None).encode() for m in messages]
        headers = {"content-type": "application/json", "authorization": bench.app[0][1]}
        connector = aiohttp.TCPConnector(limit=args.send_callers)
        async with aiohttp.ClientSession(bench.mesh.gateway_url, connector=connector, headers=headers) as http:

            async def post(body: bytes) -> None:
                async with http.post("/herald.v1.MessageService/Send", data=body) as reply:
                    if reply.status != 200:
                        raise RuntimeError(f"the gateway refused a Send: {reply.status} {await reply.text()}")
                    await reply.read()

            posts = (functools.partial(post, body) for body in bodies)
            result["http"] = await phase(bench, "/http", len(bodies), posts, args.send_callers)
    return result


async def subscribed_topic(bench: Bench, url: str, subscribers: int) -> str:
    """A topic of `subscribers` new users, each in the directory with the sink as their webhook address."""
    directory = directory_service_pb2_grpc.DirectoryServiceStub(bench.router)
    topics = topic_service_pb2_grpc.TopicServiceStub(bench.router)
    pool, topic_key = f"subscriber-{secrets.token_hex(4)}", f"bench-{secrets.token_hex(4)}"
    users = [f"{pool}-{n}" for n in range(subscribers)]
    chunks = [users[i : i + 1000] for i in range(0, len(users), 1000)]

    async def imports() -> AsyncIterator[directory_service_pb2.ImportUsersRequest]:
        for chunk in chunks:
            entries = [directory_service_pb2.User(user_id=u, addresses={"webhook": url}) for u in chunk]
            yield directory_service_pb2.ImportUsersRequest(users=entries)

    async def subscriptions() -> AsyncIterator[topic_service_pb2.AddSubscribersRequest]:
        for chunk in chunks:
            yield topic_service_pb2.AddSubscribersRequest(topic_key=topic_key, user_ids=chunk)

    await directory.ImportUsers(imports(), metadata=bench.admin)
    await topics.CreateTopic(
        topic_service_pb2.CreateTopicRequest(topic=topic_service_pb2.Topic(topic_key=topic_key)), metadata=bench.app
    )
    await topics.AddSubscribers(subscriptions(), metadata=bench.app)
    return topic_key


def table(result: dict[str, Figures], args: argparse.Namespace) -> str:
    """Markdown, to paste into docs/benchmarks.md."""

    def cell(row: Figures, figure: str, form: str) -> str:
        return format(row[figure], form) if figure in row else ""

    lines = [
        "| path | accepted msg/s | call p50 ms | call p99 ms | delivered msg/s | "
        + " | ".join(f"{p} CPU ms/msg" for p in PROCESSES)
        + " |",
        "|---|" + "---:|" * (4 + len(PROCESSES)),
    ]
    labels = {
        "ceiling": "JetStream publish, raw (ceiling)",
        "batch": f"SendBatch of {BATCH} ({args.batch_callers} callers)",
        "send": f"Send ({args.send_callers} callers)",
        "topic": f"Send to a topic of {args.topic_subscribers:,} subscribers",
        "http": f"Send as JSON through herald-gateway ({args.send_callers} callers)",
    }
    for key, label in labels.items():
        row = result[key]
        figures = [cell(row, "accepted", ",.0f"), cell(row, "p50", ",.1f"), cell(row, "p99", ",.1f")]
        figures += [cell(row, "delivered", ",.0f"), *(cell(row, p, ".3f") for p in PROCESSES)]
        lines.append(f"| {label} | " + " | ".join(figures) + " |")
    batch, send, topic = result["batch"], result["send"], result["topic"]
    lines.append(
        f"\nSendBatch accepted = {batch['of_ceiling']:.1%} of the JetStream ceiling. Topic fan-out delivered = "
        f"{topic['of_batch']:.2f} x SendBatch delivered. Recorded by feedback (the end of the CPU window): "
        f"SendBatch {batch['recorded']:,.0f} msg/s, Send {send['recorded']:,.0f} msg/s, topic "
        f"{topic['recorded']:,.0f} msg/s."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000, help="messages through SendBatch")
    parser.add_argument("--batch-callers", type=int, default=8)
    parser.add_argument("--send-messages", type=int, default=10_000, help="messages through Send")
    parser.add_argument("--send-callers", type=int, default=64)
    parser.add_argument("--users", type=int, default=5000, help="size of the pool of recipients' user ids")
    parser.add_argument("--topic-subscribers", type=int, default=20_000, help="subscribers of the topic sent to")
    parser.add_argument("--http-messages", type=int, default=10_000, help="messages through herald-gateway")
    parser.add_argument("--runs", type=int, default=3, help="each with a fresh mesh; then the median of each figure")
    args = parser.parse_args()
    print(
        f"SendBatch {args.messages:,} and Send {args.send_messages:,} messages to {args.users:,} users, "
        f"{backend()}, one process per binary, {os.cpu_count()} cores",
        flush=True,
    )
    results = []
    for i in range(args.runs):
        results.append(asyncio.run(run(args)))
        print(f"\nrun {i + 1} of {args.runs}\n{table(results[-1], args)}", flush=True)
    if args.runs > 1:
        median = {
            key: {f: statistics.median(r[key][f] for r in results) for f in row} for key, row in results[0].items()
        }
        print(f"\nmedian of {args.runs} runs\n{table(median, args)}")


if __name__ == "__main__":
    main()
