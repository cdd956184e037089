"""Faults mid-flow, as SREs meet them: the broker killed and restarted, each binary stopped and restarted. A team
sends with idempotency keys and retries what herald answers UNAVAILABLE; afterwards every message was delivered,
none is lost, and a repeat to a receiver is only ever the same delivery again (same idempotency key)."""

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import grpc
import httpx
import pytest
from herald.v1 import common_pb2
from herald.v1 import directory_service_pb2 as directory
from herald.v1 import message_service_pb2 as msg
from sqlalchemy.engine import make_url

from devmesh.mesh import Mesh
from herald.libs.bus import OUTAGE_RETRY_DELAY
from tests.conftest import running_mesh
from tests.gateway.connect import call
from tests.helpers.client import Herald, Metadata, all_final, rpc_error
from tests.helpers.databases import TEST_URL, default_backend, fresh_postgres
from tests.helpers.metrics import scrape, total
from tests.helpers.nats_cluster import NatsCluster
from tests.helpers.tcp_proxy import TcpProxy
from tests.helpers.webhook_sink import WebhookSink

# Whole meshes started, killed or kept waiting: run first, beside the rest (tests/conftest.py).
pytestmark = pytest.mark.slow

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


@pytest.mark.slow(minutes=1.5)
async def test_each_binary_stopped_and_restarted_mid_flow_loses_nothing(tmp_path: Path, sink: WebhookSink) -> None:
    order = ["intake", "router", "adapters", "feedback"]

    async def restart(mesh: Mesh, chunk: int) -> None:
        binary = mesh.binaries[order[chunk // 2 - 1]]
        assert await binary.stop(signal.SIGTERM) == 0, f"herald-{binary.service} stops cleanly on SIGTERM"
        binary.start()
        await binary.wait_healthy()

    await _through(tmp_path, sink, restart, [2, 4, 6, 8])


@pytest.mark.slow(minutes=1.5)
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


NEEDS_POSTGRES = pytest.mark.skipif(
    not TEST_URL, reason="a database server to cut off: PostgreSQL (HERALD_TEST_DATABASE_URL)"
)


@asynccontextmanager
async def _postgres_behind_a_proxy() -> AsyncIterator[tuple[TcpProxy, str]]:
    """A fresh PostgreSQL database, and the URL to give herald for it: through a proxy the test can make refuse
    connections."""
    with fresh_postgres() as url:
        target = make_url(url)
        proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
        await proxy.accept()
        try:
            yield proxy, target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        finally:
            await proxy.refuse()


@NEEDS_POSTGRES
async def test_a_database_that_refuses_connections_for_a_while_loses_nothing(tmp_path: Path, sink: WebhookSink) -> None:
    returns: list[asyncio.Task[None]] = []
    async with _postgres_behind_a_proxy() as (proxy, proxied):

        async def cut_off(_: Mesh, __: int) -> None:
            """The chunk is sent while the database refuses every connection, for 8 seconds."""
            await proxy.refuse()
            _after(8.0, proxy.accept, returns)

        try:
            run = await _through(tmp_path, sink, cut_off, [3, 7], {"HERALD_DATABASE_URL": proxied})
            assert run.refusals, "callers were told UNAVAILABLE while the database refused them"
        finally:
            await asyncio.gather(*returns)


@NEEDS_POSTGRES
async def test_while_the_directory_cannot_be_read_nothing_is_sent_blind(tmp_path: Path, sink: WebhookSink) -> None:
    """Messages to a user whose address only the directory knows wait out the database's outage in the router,
    critical ones too (docs/decisions.md: sent blind, they would ignore a removed address or an opt-out), and a
    status asked over HTTP meanwhile is 503; once the directory can be read, each reaches the directory's address
    once."""
    path = f"/directory-{uuid.uuid4().hex[:8]}"
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    async with (
        _postgres_behind_a_proxy() as (proxy, proxied),
        running_mesh(tmp_path, default_backend(), {"HERALD_DATABASE_URL": proxied}, gateway=True) as (mesh, herald),
        httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as http,
    ):
        await herald.directory.UpsertUser(
            directory.UpsertUserRequest(user=directory.User(user_id=user_id, addresses={"webhook": sink.url(path)})),
            metadata=herald.admin,
        )
        _, app = await herald.create_app()
        sends = [
            msg.SendRequest(
                template_id=await herald.create_template({"webhook": '{"n": "{{ n }}"}'}, category),
                recipients=[msg.Recipient(user_id=user_id)],
                variables={"n": f"{category}-{i}"},  # no two alike, or they would be suppressed as duplicates
            )
            for category in (S.CATEGORY_NOTIFICATION, S.CATEGORY_CRITICAL)
            for i in range(3)
        ]
        # The router is paused while they are accepted, so it first reads the directory for them during the outage.
        router = mesh.binaries["router"].proc
        assert router is not None
        router.send_signal(signal.SIGSTOP)
        try:
            message_ids = {await herald.send(app, send) for send in sends}
            await proxy.refuse()
        finally:
            router.send_signal(signal.SIGCONT)

        url = mesh.metrics_url("router")
        async with asyncio.timeout(60):  # the router has taken every message from its queues
            while total(await scrape(url), "herald_consumer_pending_messages") > 0:
                await asyncio.sleep(0.2)
        await asyncio.sleep(3 * OUTAGE_RETRY_DELAY)  # and tried them, and again
        assert sink.for_path(path) == [], "nothing is sent while the directory cannot be read"
        key = app[0][1].removeprefix("Bearer ")
        answer = await call(http, "herald.v1.StatusService/GetMessage", {"messageId": min(message_ids)}, key)
        assert (answer.status, answer.code) == (503, "unavailable"), "over HTTP too: retry once the database is back"

        await proxy.accept()
        await sink.wait_for(path, len(message_ids), timeout=120)
        for message_id in message_ids:
            status = await herald.wait_message(app, message_id, all_final, timeout=60)
            assert status.deliveries[0].state == S.DELIVERY_STATE_SENT
        delivered = Counter(r.headers["Herald-Message-Id"] for r in sink.for_path(path))
        assert delivered == Counter(message_ids), "each message reached the directory's address, once"


# How long the database stays away: longer than the two minutes after which probes that followed it restarted pods.
LONG_OUTAGE = 180.0
# Once the database is back, the mesh serves again within this long: every pod ready, a Send accepted.
BACK_WITHIN = 5.0


async def _probes(http: aiohttp.ClientSession, mesh: Mesh, probe: str) -> dict[str, int]:
    """What each binary's `probe` (livez, readyz) answers, as the kubelet asks it (deploy/k8s); 0 = no answer."""
    answers = {}
    for service, binary in mesh.binaries.items():
        try:
            async with http.get(f"http://{binary.env['HERALD_METRICS_ADDR']}/{probe}") as reply:
                answers[service] = reply.status
        except (aiohttp.ClientError, TimeoutError):
            answers[service] = 0
    return answers


@pytest.mark.slow(minutes=3)
@NEEDS_POSTGRES
async def test_a_three_minute_database_outage_restarts_nothing_and_the_mesh_serves_soon_after(
    tmp_path: Path, sink: WebhookSink
) -> None:
    """Through the outage every liveness probe passes (no pod would be restarted) and every readiness probe fails
    (each pod out of rotation); a Send meanwhile is told UNAVAILABLE; within 5 s of the database's return every pod
    is ready, and a Send is accepted and delivered."""
    path = f"/outage-{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    async with (
        _postgres_behind_a_proxy() as (proxy, proxied),
        running_mesh(tmp_path, default_backend(), {"HERALD_DATABASE_URL": proxied}) as (mesh, herald),
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
    ):
        _, app = await herald.create_app()
        send = msg.SendRequest(
            template_id=await herald.create_template({"webhook": "{}"}),
            recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})],
        )
        processes = {service: binary.proc for service, binary in mesh.binaries.items()}
        everyone = dict.fromkeys(mesh.binaries, 200)
        assert await _probes(http, mesh, "readyz") == everyone

        await proxy.refuse()
        cut = loop.time()
        unready_since: dict[str, float] = {}
        refused: grpc.StatusCode | None = None
        while (elapsed := loop.time() - cut) < LONG_OUTAGE:
            assert await _probes(http, mesh, "livez") == everyone, f"{elapsed:.0f} s into the outage"
            for service, answer in (await _probes(http, mesh, "readyz")).items():
                if answer == 200:
                    assert service not in unready_since, f"herald-{service} ready at {elapsed:.0f} s, database away"
                else:
                    assert answer == 503, (service, answer)
                    unready_since.setdefault(service, elapsed)
            if refused is None and elapsed > LONG_OUTAGE / 2:
                refused = (await rpc_error(herald.messages.Send(send, metadata=app, timeout=30))).code()
            await asyncio.sleep(1)
        assert set(unready_since) == set(mesh.binaries), "every pod is out of rotation"
        assert max(unready_since.values()) < 30, unready_since
        assert refused == grpc.StatusCode.UNAVAILABLE
        assert {s: b.proc for s, b in mesh.binaries.items()} == processes and all(
            b.running for b in mesh.binaries.values()
        ), "no binary exited or was restarted"

        await proxy.accept()
        back = loop.time()
        while (ready := await _probes(http, mesh, "readyz")) != everyone:
            assert loop.time() - back < BACK_WITHIN, ready
            await asyncio.sleep(0.2)
        message_id = await herald.send(app, send)
        assert loop.time() - back < BACK_WITHIN, "a Send is accepted within 5 s of the database's return"
        [delivered] = await sink.wait_for(path, timeout=60)
        assert delivered.headers["Herald-Message-Id"] == message_id
