"""A JetStream pull consumer read through one open pull request at a time.

Each request asks the broker for up to a batch of messages and lasts PULL_WAIT; the broker hands messages to it as
they arrive and ends it with a status (408 when it expires, 409 when refused). A fetch hands over what has arrived
as soon as anything has and leaves the request open for the rest, and a new request is sent only once the last one
is filled or ended, so no request is left behind. nats-py's fetch sent a new request per fetch and took a 408 that
came late from an earlier one for the end of its own: the extra request it then sent stayed open after the fetch
returned, caught a later message, and the fetch that got it waited for the rest of that request's batch until it
expired - a message held seconds on an idle consumer (tests/libs/test_bus.py)."""

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from functools import partial

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import DEFAULT_PREFIX, ConsumerConfig, StatusCode
from nats.js.errors import NotFoundError

from herald.libs.bus.consuming import Delivered

# How long a pull request waits on an idle consumer before the next is sent. A message that arrives meanwhile is
# handed over at once whatever this is; a shorter wait only costs an idle pod (and the broker, once per consumer)
# a request each time: an idle mesh (four binaries, the gateway, the broker) took about 5 % of a core at one second,
# 3 % at five.
PULL_WAIT = 5.0

# How long past its expiry a request whose end the broker did not say (a connection lost meanwhile) counts as open.
END_GRACE = 1.0


# The statuses that end a request in the ordinary way: it expired, or (never asked for here) nothing was waiting.
ENDED = {StatusCode.REQUEST_TIMEOUT, StatusCode.NO_MESSAGES}


class PullRefused(Exception):
    """The broker ended a pull request otherwise (409: the consumer deleted, a leader change, too many requests
    waiting; 503: no JetStream answering): the Consumer waits a moment before it asks again."""


@dataclass
class _Request:
    """The pull request open at the broker: how many messages it may still bring, and until when."""

    left: int
    until: float


class PullSource:
    """A durable JetStream pull consumer as a Consumer's Source."""

    def __init__(self, nc: Client, js: JetStreamContext, stream: str, durable: str) -> None:
        self._nc = nc
        self._js = js
        self._stream = stream
        self._durable = durable
        self._next_subject = f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.inbox = nc.new_inbox()  # where the broker delivers
        self._sub: Subscription | None = None
        self._arrived: list[Msg] = []
        self._arrival = asyncio.Event()
        self._open: _Request | None = None

    @classmethod
    async def open(
        cls, nc: Client, js: JetStreamContext, stream: str, config: ConsumerConfig, count: int = 1
    ) -> list["PullSource"]:
        """`count` sources pulling from the durable consumer `config` names, which is created with `config` unless
        it exists (asked once, however many pull from it)."""
        durable = config.durable_name
        assert durable is not None
        try:
            await js.consumer_info(stream, durable)
        except NotFoundError:
            await js.add_consumer(stream, config=config)
        sources = [cls(nc, js, stream, durable) for _ in range(count)]
        for source in sources:
            source._sub = await nc.subscribe(source.inbox, cb=source._arrive)
        return sources

    async def _arrive(self, msg: Msg) -> None:
        self._arrived.append(msg)
        self._arrival.set()

    async def fetch(self, batch: int) -> list[Delivered]:
        now = time.monotonic()
        if self._open is None or now > self._open.until:
            await self._ask(batch, now)
        if not self._arrived:
            assert self._open is not None
            self._arrival.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrival.wait(), self._open.until - now)
        taken, self._arrived = self._arrived[:batch], self._arrived[batch:]
        delivered = []
        refused = None
        for msg in taken:
            status = JetStreamContext.is_status_msg(msg)
            if status is None:
                delivered.append(_delivered(msg))
                if self._open is not None:
                    self._open.left -= 1
                    if self._open.left <= 0:
                        self._open = None
            elif status != StatusCode.CONTROL_MESSAGE:
                self._open = None
                if status not in ENDED:
                    refused = f"{status} {(msg.headers or {}).get('Description', '')}"
        if refused and not delivered:
            raise PullRefused(refused)
        return delivered

    async def _ask(self, batch: int, now: float) -> None:
        request = {"batch": batch, "expires": int(PULL_WAIT * 1e9)}
        await self._nc.publish(self._next_subject, json.dumps(request).encode(), reply=self.inbox)
        self._open = _Request(batch, now + PULL_WAIT + END_GRACE)

    async def lag(self) -> tuple[int, int]:
        info = await self._js.consumer_info(self._stream, self._durable)
        return info.num_pending or 0, info.num_ack_pending or 0

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()


def _delivered(msg: Msg) -> Delivered:
    return Delivered(
        msg.subject,
        msg.data,
        dict(msg.headers or {}),
        msg.metadata.num_delivered,
        msg.metadata.sequence.stream,
        partial(_settle, msg),
    )


async def _settle(msg: Msg, delay: float | None) -> None:
    if delay is None:
        await msg.ack()
    else:
        await msg.nak(delay=delay)
