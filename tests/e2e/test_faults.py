"""Faults mid-flow, as SREs meet them: the broker killed and restarted, each binary stopped and restarted. A team
sends with idempotency keys and retries what herald answers UNAVAILABLE; afterwards every message was delivered,
none is lost, and a repeat to a receiver is only ever the same delivery again (same idempotency key)."""

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from sqlalchemy.engine import make_url

from libs.localmesh import Mesh
from tests.conftest import running_mesh
from tests.helpers.client import Herald, Metadata, all_final
from tests.helpers.databases import TEST_URL, default_backend, fresh_postgres
from tests.helpers.nats_cluster import NatsCluster
from tests.helpers.tcp_proxy import TcpProxy
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2
CHUNKS = 10
PER_CHUNK = 100
# Answers a retrying caller sees while a part of herald is away.
RETRIED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class Run:
    """One run of CHUNKS x PER_CHUNK messages, each to its own webhook path, sent a chunk (one SendBatch) at a time
    with idempotency keys; a chunk answered UNAVAILABLE is sent again, with the same keys, until it is accepted."""

    def __init__(self, herald: Herald, app: Metadata, template: str, sink: WebhookSink) -> None:
        self.herald, self.app, self.template, self.sink = herald, app, template, sink
        self.run = uuid.uuid4().hex[:6]
        self.message_ids: set[str] = set()
        # SendBatch calls answered with a refusal to retry: the fault was felt.
        self.refusals = 0

    async def send(self, chunk: int) -> None:
        requests = [
            msg.SendRequest(
                template_id=self.template,
                recipients=[msg.Recipient(addresses={"webhook": self.sink.url(f"/fault-{self.run}/{chunk}/{i}")})],
                idempotency_key=f"{self.run}-{chunk}-{i}",
            )
            for i in range(PER_CHUNK)
        ]
        async with asyncio.timeout(120):
            while (refused := await self._send_batch(requests)) is not None:
                assert refused <= {c.value[0] for c in RETRIED}, refused
                self.refusals += 1
                await asyncio.sleep(0.5)

    async def _send_batch(self, requests: list[msg.SendRequest]) -> set[int] | None:
        """None once every entry was accepted; else the codes it was refused with."""
        try:
            reply = await self.herald.messages.SendBatch(
                msg.SendBatchRequest(requests=requests), metadata=self.app, timeout=10
            )
        except grpc.aio.AioRpcError as e:
            return {e.code().value[0]}
        if codes := {r.error.code for r in reply.results if r.HasField("error")}:
            return codes
        self.message_ids.update(r.response.message_id for r in reply.results)
        return None

    def arrived(self) -> list[dict[str, str]]:
        return [r.headers for r in self.sink.received if r.path.startswith(f"/fault-{self.run}/")]

    async def check(self) -> None:
        """Every message accepted once, delivered, SENT in its status; repeats only under the same key."""
        assert len(self.message_ids) == CHUNKS * PER_CHUNK, "each idempotency key made one message"
        async with asyncio.timeout(180):
            while len({h["Idempotency-Key"] for h in self.arrived()}) < CHUNKS * PER_CHUNK:
                await asyncio.sleep(0.2)
        for message_id in self.message_ids:
            status = await self.herald.wait_message(self.app, message_id, all_final, timeout=60)
            assert status.deliveries[0].state == S.DELIVERY_STATE_SENT
        delivered = Counter(h["Herald-Message-Id"] for h in self.arrived())
        assert set(delivered) == self.message_ids, "every message, and nothing else, reached its receiver"
        keys = Counter(h["Idempotency-Key"] for h in self.arrived())
        assert len(keys) == len(delivered), "a repeat is always the same delivery, under the same key"


def _after(seconds: float, start: Callable[[], Awaitable[None]], pending: list[asyncio.Task[None]]) -> None:
    """`start` `seconds` from now, in the background: the next chunk is sent meanwhile."""

    async def later() -> None:
        await asyncio.sleep(seconds)
        await start()

    pending.append(asyncio.create_task(later()))


async def _through(
    tmp_path: Path,
    sink: WebhookSink,
    fault: Callable[[Mesh, int], Awaitable[None]],
    faults_at: list[int],
    env: dict[str, str] | None = None,
    nats_url: str | None = None,
) -> Run:
    async with running_mesh(tmp_path, default_backend(), env, nats_url) as (mesh, herald):
        _, app = await herald.create_app()
        run = Run(herald, app, await herald.create_template({"webhook": "{}"}), sink)
        for chunk in range(CHUNKS):
            if chunk in faults_at:
                await fault(mesh, chunk)
            await run.send(chunk)
        await run.check()
    return run


async def test_the_broker_killed_and_restarted_mid_flow_loses_nothing(tmp_path: Path, sink: WebhookSink) -> None:
    restarts: list[asyncio.Task[None]] = []

    async def kill_the_broker(mesh: Mesh, chunk: int) -> None:
        """The chunk is sent while the broker is away: its caller is told UNAVAILABLE until it is back."""
        broker = mesh.nats
        assert broker is not None and broker.proc is not None
        broker.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(broker.proc.wait, 10)
        _after(3.0, broker.start, restarts)

    run = await _through(tmp_path, sink, kill_the_broker, [2, 5, 8])
    assert run.refusals, "callers were told UNAVAILABLE while the broker was away"
    await asyncio.gather(*restarts)


async def test_each_binary_stopped_and_restarted_mid_flow_loses_nothing(tmp_path: Path, sink: WebhookSink) -> None:
    order = ["intake", "router", "adapters", "feedback"]

    async def restart(mesh: Mesh, chunk: int) -> None:
        binary = mesh.binaries[order[chunk // 2 - 1]]
        assert await binary.stop(signal.SIGTERM) == 0, f"herald-{binary.service} stops cleanly on SIGTERM"
        binary.start()
        await binary.wait_healthy()

    await _through(tmp_path, sink, restart, [2, 4, 6, 8])


async def test_the_stream_leader_of_a_three_node_cluster_killed_mid_flow_loses_nothing(
    tmp_path: Path, sink: WebhookSink
) -> None:
    cluster = NatsCluster(tmp_path / "cluster")
    returns: list[asyncio.Task[None]] = []

    async def kill_the_leader(_: Mesh, __: int) -> None:
        """The server leading HERALD_MESSAGES (where accepted messages go) dies as the chunk is sent."""
        server = cluster.servers[await cluster.leader("HERALD_MESSAGES")]
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(server.proc.wait, 10)
        _after(3.0, server.start, returns)

    try:
        await cluster.start()
        await _through(tmp_path, sink, kill_the_leader, [3, 7], {"HERALD_STREAM_REPLICAS": "3"}, cluster.url)
    finally:
        await asyncio.gather(*returns)
        await cluster.stop()


@pytest.mark.skipif(not TEST_URL, reason="a database server to cut off: PostgreSQL (HERALD_TEST_DATABASE_URL)")
async def test_a_database_that_refuses_connections_for_a_while_loses_nothing(tmp_path: Path, sink: WebhookSink) -> None:
    returns: list[asyncio.Task[None]] = []
    with fresh_postgres() as url:
        target = make_url(url)
        proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
        await proxy.accept()

        async def cut_off(_: Mesh, __: int) -> None:
            """The chunk is sent while the database refuses every connection, for 8 seconds."""
            await proxy.refuse()
            _after(8.0, proxy.accept, returns)

        proxied = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        try:
            run = await _through(tmp_path, sink, cut_off, [3, 7], {"HERALD_DATABASE_URL": proxied})
            assert run.refusals, "callers were told UNAVAILABLE while the database refused them"
        finally:
            await asyncio.gather(*returns)
            await proxy.refuse()
