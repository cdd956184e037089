"""The bus over NATS JetStream."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.client import KV_STREAM_TEMPLATE
from nats.js.errors import BadRequestError, NotFoundError

from herald.libs import subjects
from herald.libs.bus.consuming import Source
from herald.libs.bus.core import BusCore
from herald.libs.bus.key_value import AckedKeyValue
from herald.libs.bus.pubacks import PubAcks
from herald.libs.bus.pulling import PullSource
from herald.libs.bus.schedules import Scheduled
from herald.libs.bus.streams import DUPLICATE_WINDOW, STREAMS
from herald.libs.config import STAGE_RETRY_BACKOFF
from herald.libs.errors import CannotStart
from herald.libs.tls import NatsAuth

log = structlog.get_logger()


# JetStream message schedules (Nats-Schedule: send_at, escalation steps, digest windows) came with nats-server 2.12;
# an older server takes the streams and never fires a schedule, so herald refuses it at start.
MIN_SERVER_VERSION = (2, 12)


# How long announce_asking waits for a listener's answer.
LISTENER_TIMEOUT = 1.0

STREAM_SETUP_ATTEMPTS = 3


# How many tenths of a second a new replicated KV bucket may take to elect its leader before it is used anyway.
LEADER_WAIT_ROUNDS = 100


class Bus(BusCore):
    """The bus over NATS JetStream."""

    def __init__(
        self, nc: Client, js: JetStreamContext, replicas: int, retry_backoff: tuple[float, ...] = STAGE_RETRY_BACKOFF
    ) -> None:
        super().__init__(retry_backoff)
        self.nc = nc
        self.js = js
        self._replicas = replicas
        self._acks = PubAcks(nc)

    @classmethod
    async def connect(
        cls,
        url: str,
        name: str,
        replicas: int = 1,
        retry_backoff: tuple[float, ...] = STAGE_RETRY_BACKOFF,
        auth: NatsAuth | None = None,
    ) -> "Bus":
        """`auth`: the credentials file and CA of HERALD_NATS_CREDS_FILE / HERALD_NATS_CA_FILE (herald/libs/tls.py)."""

        async def on_error(e: Exception) -> None:
            log.warning("nats error", error=str(e))

        nc = await nats.connect(
            servers=url.split(","),
            name=name,
            error_cb=on_error,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            **(auth.connect_options() if auth else {}),
        )
        version = nc.connected_server_version
        if (version.major, version.minor) < MIN_SERVER_VERSION:
            await nc.close()
            raise CannotStart(
                f"nats-server {version.major}.{version.minor}.{version.patch} is too old:"
                f" herald needs {'.'.join(map(str, MIN_SERVER_VERSION))} or later (JetStream message schedules)"
            )
        bus = cls(nc, nc.jetstream(), replicas, retry_backoff)
        await bus._acks.open()
        return bus

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    async def _store(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        await self._acks.publish(subject, payload, headers)

    async def _pull(
        self,
        stream: str,
        durable: str,
        subject: str,
        *,
        ack_wait: float,
        max_deliver: int,
        max_ack_pending: int,
        sources: int,
    ) -> list[Source]:
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=subject,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
        )
        return list(await PullSource.open(self.nc, self.js, stream, config, sources))

    async def ensure_streams(self) -> None:
        """Create or update herald's streams; every binary calls it at start-up, so order does not matter."""
        for name, stream in STREAMS.items():
            config = StreamConfig(
                name=name,
                subjects=stream.subjects,
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=stream.max_age,
                duplicate_window=DUPLICATE_WINDOW,
                num_replicas=self._replicas,
                allow_msg_schedules=stream.schedules or None,
                allow_msg_ttl=stream.schedules or None,
            )
            for attempt in range(1, STREAM_SETUP_ATTEMPTS + 1):
                try:
                    await self._put_stream(config)
                    break
                except NatsTimeout:  # a busy server (several binaries starting at once) answers late
                    if attempt == STREAM_SETUP_ATTEMPTS:
                        raise

    async def _put_stream(self, config: StreamConfig) -> None:
        try:
            await self.js.add_stream(config)
        except BadRequestError:
            await self.js.update_stream(config)

    async def announce(self, subject: str, payload: bytes = b"") -> None:
        """A core NATS notice to every process listening now; not stored, so listeners also re-read on a timer."""
        await self.nc.publish(subject, payload)

    async def announce_asking(self, subject: str, payload: bytes = b"") -> bool:
        """announce, and say whether any process was listening (each listener answers; no listener, and the
        server says so at once)."""
        try:
            await self.nc.request(subject, payload, timeout=LISTENER_TIMEOUT)
        except nats.errors.NoRespondersError:
            return False
        except nats.errors.TimeoutError:
            return True  # a listener too busy to answer in time still got the notice
        return True

    @asynccontextmanager
    async def notices(self, subject: str) -> AsyncIterator[asyncio.Queue[bytes]]:
        """The payloads of notices on `subject` (announce) while the block runs; announce_asking hears that
        this process listens."""
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_notice(msg: Msg) -> None:
            queue.put_nowait(msg.data)
            if msg.reply:
                await msg.respond(b"")

        subscription = await self.nc.subscribe(subject, cb=on_notice)
        # The server has the interest once this returns: a notice published after it, by any process on this
        # server, is heard.
        await self.nc.flush()
        try:
            yield queue
        finally:
            await subscription.unsubscribe()

    async def scheduled(self, subject: str) -> Scheduled | None:
        """The schedule `subject` names, or None if there is none (never made, fired, withdrawn)."""
        try:
            found = await self.js.get_last_msg(subjects.SCHEDULES_STREAM, subject)
        except NotFoundError:
            return None
        return Scheduled(found.data or b"", found.seq or 0)

    async def scheduled_under(self, pattern: str) -> dict[str, Scheduled]:
        """Every schedule under `pattern` (wildcards allowed), by subject."""
        info = await self.js.stream_info(subjects.SCHEDULES_STREAM, subjects_filter=pattern)
        found = {subject: await self.scheduled(subject) for subject in (info.state.subjects or {})}
        return {subject: schedule for subject, schedule in found.items() if schedule is not None}

    async def unschedule(self, pattern: str) -> None:
        """Withdraw the schedules under `pattern` (wildcards allowed)."""
        await self.js.purge_stream(subjects.SCHEDULES_STREAM, subject=pattern)

    async def key_value(self, bucket: str, *, ttl: float | None = None, memory: bool = False) -> AckedKeyValue:
        """Open a KV bucket, creating it on first use (every replica may be first)."""
        stream = KV_STREAM_TEMPLATE.format(bucket=bucket)
        try:
            info = await self._leader_of(stream)
        except NotFoundError:
            storage = StorageType.MEMORY if memory else StorageType.FILE
            await self.js.create_key_value(
                KeyValueConfig(bucket=bucket, history=1, ttl=ttl, storage=storage, replicas=self._replicas)
            )
            info = await self._leader_of(stream)
        return AckedKeyValue(bucket, info, self.js, self._acks)

    async def _leader_of(self, stream: str) -> StreamInfo:
        """Wait (a little) until a replicated stream has a leader: a bucket just created in a cluster answers
        writes only then, and a binary's first write at start-up must not fail for it ("no response from stream")."""
        for _ in range(LEADER_WAIT_ROUNDS):
            info = await self.js.stream_info(stream)
            if info.cluster is None or info.cluster.leader:
                break
            await asyncio.sleep(0.1)
        return info

    async def subject_counts(self, stream: str) -> dict[str, int]:
        """How many messages `stream` holds on each of its subjects."""
        info = await self.js.stream_info(stream, subjects_filter=">")
        return dict(info.state.subjects or {})

    async def close(self) -> None:
        """Close after the consumers stopped. Every publish was already acked, so nothing is left to drain."""
        await self.stop_consumers()
        if not self.nc.is_closed:
            await self.nc.close()
