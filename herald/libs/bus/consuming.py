"""Consumers: fetch batches from a durable consumer, hand them to the handler and settle each message with its
outcome - ack, nak with a delay, retries of a Broken message, then the dead letters."""

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
from prometheus_client import Counter

from herald.libs import subjects, telemetry
from herald.libs.bus.grouping import RECORDS_HEADER
from herald.libs.bus.handlers import ACK, BatchHandler, Broken, Incoming, Outcome, failed
from herald.libs.bus.precedence import RANK, Precedence
from herald.libs.bus.tracing import process_span
from herald.libs.errors import TRANSIENT

log = structlog.get_logger()


UNPROCESSED = Counter(
    "herald_unprocessed_messages_total",
    "Messages a consumer could not handle after its last retry, dead-lettered on herald.unprocessed.<consumer>.",
    ["consumer"],
)


# How many messages' failures a consumer remembers (see Consumer._failures); past it the oldest are forgotten.
FAILURES_KEPT = 10_000


@dataclass(frozen=True)
class Delivered:
    """One delivery of a stored message to a consumer, and how to settle it: None acks, a number naks it with that
    delay."""

    subject: str
    data: bytes
    headers: dict[str, str]
    delivery_count: int
    sequence: int
    settle: Callable[[float | None], Awaitable[None]]


class Source(Protocol):
    """Where a Consumer fetches its batches: a durable consumer of the broker."""

    async def fetch(self, batch: int) -> list[Delivered]:
        """Up to `batch` deliveries, as soon as any came; none if nothing came within the source's wait (5 s on
        NATS, pulling.PULL_WAIT)."""
        ...

    async def lag(self) -> tuple[int, int]:
        """(messages not yet delivered, messages delivered and not yet acked)."""
        ...

    async def close(self) -> None: ...


# BusCore._store.
Store = Callable[[str, bytes, dict[str, str]], Awaitable[None]]


class Consumer:
    """Fetches batches from one durable pull consumer and settles every message with its handler's outcome."""

    def __init__(
        self,
        store: Store,
        name: str,
        source: Source,
        handler: BatchHandler,
        batch: int,
        rank: int,
        precedence: Precedence,
        retry_backoff: tuple[float, ...],
        linger: float,
        *,
        of_records: bool = False,
    ) -> None:
        self.name = name
        self._store = store
        self._source = source
        self._handler = handler
        self._batch = batch
        self._rank = rank
        self._precedence = precedence
        self._retry_backoff = retry_backoff
        self._linger = linger
        # Messages the next fetch asks for. Counting records (grouped messages hold many: Herald-Records), a batch
        # is at most `batch` records (or one message that holds more): what a handler has in hand at once - the
        # calls a SIGKILL may cut short, the work that must end within the ack wait. A fetch asks for as many
        # messages as the last batch's records per message let a batch fill, starting at one; a fetch that brought
        # more (right after a run of single records) is handed over a batch at a time.
        self._of_records = of_records
        self._fetching = 1 if of_records else batch
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # While the task waits in a fetch, with no message in hand.
        self._waiting = False
        # Failures so far of the messages being retried, by stream sequence. A message's retries count its own
        # failures, not its deliveries: those include every nak its handler asked for (a group of delivery jobs
        # waiting for its jobs' retries may come back many times before something breaks). Kept in memory, so a
        # restart gives a message its retries afresh.
        self._failures: OrderedDict[int, int] = OrderedDict()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.name}")

    async def lag(self) -> tuple[int, int]:
        return await self._source.lag()

    async def stop(self) -> None:
        """Stop fetching; the batch in hand finishes (each message acked or nak'ed) before this returns. A fetch
        still waiting is cancelled rather than waited out (an idle fetch waits seconds: see pulling.PULL_WAIT);
        a message it was handed in that instant is not acked, and the broker redelivers it after its ack wait."""
        self._stopping.set()
        if self._task is not None:
            if self._waiting:
                self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
            with contextlib.suppress(Exception):
                await self._source.close()

    async def _run(self) -> None:
        RANK.set(self._rank)  # this task's own context, inherited by everything the handler starts
        while not self._stopping.is_set():
            await self._precedence.turn()
            self._waiting = True
            try:
                asked = self._fetching
                delivered = await self._source.fetch(asked)
            except Exception as e:  # connection blips: the client reconnects by itself
                log.warning("fetch failed", consumer=self.name, error=repr(e))
                await asyncio.sleep(0.5)
                continue
            finally:
                self._waiting = False
            if not delivered:
                continue
            weights = [_records(d) if self._of_records else 1 for d in delivered]
            with self._precedence.holding(self._rank):
                for batch in self._batches(delivered, weights):
                    await self._handle(batch)
            if self._of_records:
                self._fetching = max(1, min(self._batch, self._batch * len(delivered) // sum(weights)))
            if self._linger and len(delivered) < asked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._linger)

    def _batches(self, delivered: list[Delivered], weights: list[int]) -> list[list[Delivered]]:
        """What was fetched, as the batches the handler gets: all of it, or, counting records (`weights`: each
        message's), consecutive runs of at most `batch` records each."""
        if not self._of_records:
            return [delivered]
        batches: list[list[Delivered]] = [[]]
        records = 0
        for one, weight in zip(delivered, weights, strict=True):
            if batches[-1] and records + weight > self._batch:
                batches.append([])
                records = 0
            batches[-1].append(one)
            records += weight
        return batches

    async def _handle(self, delivered: list[Delivered]) -> None:
        batch = [self._incoming(d) for d in delivered]
        try:
            outcomes = await self._handler(batch)
        except Exception as e:
            if len(batch) > 1 and not isinstance(e, TRANSIENT):
                # One bad message must not take the rest of its batch through retries and into the dead letters
                # with it: each is handled again on its own (handlers are idempotent, as redelivery needs).
                outcomes = [await self._alone(incoming) for incoming in batch]
            else:
                outcomes = [failed(e, batch, consumer=self.name)] * len(batch)
        for one, incoming, outcome in zip(delivered, batch, outcomes, strict=True):
            try:
                await self._settle(one, incoming, outcome)
            except Exception as e:  # the connection dropped: JetStream redelivers after ack_wait
                log.warning("could not settle message", consumer=self.name, error=repr(e))
            incoming.span.end()

    async def _alone(self, incoming: Incoming) -> Outcome:
        try:
            [outcome] = await self._handler([incoming])
        except Exception as e:
            return failed(e, [incoming], consumer=self.name, subject=incoming.subject)
        return outcome

    async def _settle(self, delivered: Delivered, incoming: Incoming, outcome: Outcome) -> None:
        failures = self._failures.pop(delivered.sequence, 0)
        if outcome is ACK or not isinstance(outcome, Broken):
            await delivered.settle(outcome)
        elif failures < len(self._retry_backoff):
            self._failures[delivered.sequence] = failures + 1
            if len(self._failures) > FAILURES_KEPT:
                self._failures.popitem(last=False)
            await delivered.settle(self._retry_backoff[failures])
        else:
            await self._dead_letter(incoming, outcome)
            await delivered.settle(ACK)

    async def _dead_letter(self, incoming: Incoming, broken: Broken) -> None:
        """Keep a message no retry could handle where an operator finds it, before it is acked (a failed publish
        leaves it unacked, to be redelivered)."""
        headers = {
            **incoming.headers,
            "Herald-Subject": incoming.subject,
            "Herald-Consumer": self.name,
            "Herald-Deliveries": str(incoming.delivery_count),
            "Herald-Reason": " ".join(broken.reason.split()),  # a header is one line
        }
        headers.pop("Nats-Msg-Id", None)
        await self._store(subjects.unprocessed(self.name), incoming.data, headers)
        UNPROCESSED.labels(self.name).inc()
        log.error(
            "dead-lettered a message no retry could handle",
            consumer=self.name,
            subject=incoming.subject,
            deliveries=incoming.delivery_count,
            reason=broken.reason,
        )

    def _incoming(self, delivered: Delivered) -> Incoming:
        span = process_span(delivered.subject, telemetry.extract(delivered.headers))
        span.set_attribute("messaging.consumer.group.name", self.name)
        return Incoming(
            delivered.subject, delivered.data, delivered.headers, delivered.delivery_count, span, delivered.sequence
        )


def _records(delivered: Delivered) -> int:
    """How many records a message holds: a group says so (RECORDS_HEADER); anything else is one."""
    count = delivered.headers.get(RECORDS_HEADER, "1")
    return max(1, int(count)) if count.isdigit() else 1
