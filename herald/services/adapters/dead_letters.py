"""DeadLetterService: list and replay what failed after its last retry.

Two kinds live in the HERALD_DEAD_LETTERS stream, so they need no table and survive any herald process:
deliveries a provider kept failing (herald.dead.<category>.<channel>, a DeadLetterRecord), and messages a stage
could not handle (herald.unprocessed.<consumer>, the message itself with Herald-* headers;
herald/libs/bus/consuming.py). A delivery's replay publishes the job again on its delivery subject with `replay`
raised, which gives it a fresh retry budget in the deliverer; a message's replay publishes it again on its
subject, where its deliveries count from 1 again. Either way the dead letter then leaves the stream.

What waits there is exported as gauges, counted from the stream at each scrape (count_waiting): every adapters
replica reports the same numbers, so dashboards take the max across replicas.
"""

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

import grpc
from herald.v1 import dead_letter_service_pb2 as pb
from herald.v1 import dead_letter_service_pb2_grpc
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from prometheus_client import Gauge

from herald.internal.v1 import work_pb2
from herald.libs import categories, channels, delivery_jobs, storable, subjects
from herald.libs.bus import Bus
from herald.libs.callers import require_operator
from herald.libs.errors import InvalidArgument
from herald.libs.timeutil import to_timestamp

STREAM = subjects.DEAD_LETTERS_STREAM
DEFAULT_PAGE = 100
MAX_PAGE = 1000
# A durable consumer's name, as herald names them (a subject token).
CONSUMER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
T = TypeVar("T")
DEAD_LETTERS_WAITING = Gauge(
    "herald_dead_letters_waiting",
    "Deliveries dead-lettered after their last retry and not replayed yet, by category and channel.",
    ["category", "channel"],
)
UNPROCESSED_WAITING = Gauge(
    "herald_unprocessed_messages_waiting",
    "Messages a stage gave up on and dead-lettered, not replayed yet, by the consumer that gave up.",
    ["consumer"],
)


async def count_waiting(bus: Bus) -> None:
    """Set the gauges from what HERALD_DEAD_LETTERS holds now; a channel with none reads 0, not stale."""
    counts = await bus.subject_counts(STREAM)
    for category in categories.KNOWN:
        for channel in channels.KNOWN:
            DEAD_LETTERS_WAITING.labels(categories.name(category), channel).set(
                counts.get(subjects.dead_letter(category, channel), 0)
            )
    UNPROCESSED_WAITING.clear()
    unprocessed = subjects.unprocessed("")
    for subject, count in counts.items():
        if subject.startswith(unprocessed):
            UNPROCESSED_WAITING.labels(subject.removeprefix(unprocessed)).set(count)


class DeadLetterService(dead_letter_service_pb2_grpc.DeadLetterServiceServicer):
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        require_operator()
        bad = _problems(request.category, request.channel) | _paging_problems(request.page_size, request.page_token)
        if bad:
            raise InvalidArgument(bad)
        subject = subjects.dead_letter(request.category, request.channel)
        found, token = await self._page(subject, request.page_size, request.page_token, _dead_letter)
        return pb.ListDeadLettersResponse(dead_letters=found, next_page_token=token)

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayDeadLettersResponse:
        require_operator()
        bad = _problems(request.category, request.channel) | _sequence_problems(request.sequences)
        if bad:
            raise InvalidArgument(bad)
        subject = subjects.dead_letter(request.category, request.channel)
        replayed = 0
        if request.sequences:
            for sequence in request.sequences:
                replayed += await self._replay(sequence, request.category, request.channel)
            return pb.ReplayDeadLettersResponse(replayed=replayed)
        sequence = 1
        while (found := await self._next_record(sequence, subject)) is not None:
            sequence, record = found
            await self._put_back(sequence, record)
            replayed += 1
            sequence += 1
        return pb.ReplayDeadLettersResponse(replayed=replayed)

    async def _next_record(self, sequence: int, subject: str) -> tuple[int, work_pb2.DeadLetterRecord] | None:
        """The first dead letter on `subject` at or after `sequence`, with its own sequence."""
        if (message := await self._next(sequence, subject)) is None:
            return None
        return message.seq or 0, work_pb2.DeadLetterRecord.FromString(message.data or b"")

    async def _next(self, sequence: int, subject: str) -> RawStreamMsg | None:
        try:
            return await self._bus.js.get_msg(STREAM, seq=sequence, subject=subject, next=True)
        except NotFoundError:
            return None

    async def _page(
        self, subject: str, page_size: int, page_token: str, entry: Callable[[RawStreamMsg], T]
    ) -> tuple[list[T], str]:
        """One page of the dead letters on `subject`, oldest first, and the token of the next page."""
        size = page_size or DEFAULT_PAGE
        sequence = int(page_token or 1)
        found: list[tuple[int, T]] = []
        while len(found) <= size and (message := await self._next(sequence, subject)) is not None:
            sequence = (message.seq or 0) + 1
            found.append((sequence - 1, entry(message)))
        token = str(found[size][0]) if len(found) > size else ""
        return [item for _, item in found[:size]], token

    async def ListUnprocessedMessages(
        self, request: pb.ListUnprocessedMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUnprocessedMessagesResponse:
        require_operator()
        bad = _consumer_problems(request.consumer) | _paging_problems(request.page_size, request.page_token)
        if bad:
            raise InvalidArgument(bad)
        subject = subjects.unprocessed(request.consumer or "*")
        found, token = await self._page(subject, request.page_size, request.page_token, _unprocessed)
        return pb.ListUnprocessedMessagesResponse(unprocessed_messages=found, next_page_token=token)

    async def ReplayUnprocessedMessages(
        self, request: pb.ReplayUnprocessedMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayUnprocessedMessagesResponse:
        require_operator()
        bad = _consumer_problems(request.consumer) | _sequence_problems(request.sequences)
        if bad:
            raise InvalidArgument(bad)
        subject = subjects.unprocessed(request.consumer or "*")
        if request.sequences:
            replayed = [await self._replay_unprocessed(sequence, request.consumer) for sequence in request.sequences]
            return pb.ReplayUnprocessedMessagesResponse(replayed=sum(replayed))
        count, sequence = 0, 1
        while (message := await self._next(sequence, subject)) is not None:
            count += await self._put_back_unprocessed(message)
            sequence = (message.seq or 0) + 1
        return pb.ReplayUnprocessedMessagesResponse(replayed=count)

    async def _replay_unprocessed(self, sequence: int, consumer: str) -> int:
        """1 when the message was put back; 0 when there is none at `sequence` (replayed already) or it is not an
        unprocessed message of `consumer` (when given): a mistyped sequence must not replay something else."""
        if (message := await self._at(sequence)) is None:
            return 0
        where = message.subject or ""
        if not (where == subjects.unprocessed(consumer) if consumer else where.startswith(subjects.unprocessed(""))):
            return 0
        return await self._put_back_unprocessed(message)

    async def _put_back_unprocessed(self, message: RawStreamMsg) -> int:
        headers = message.headers or {}
        if not (subject := headers.get("Herald-Subject")):
            return 0
        again = {k: v for k, v in headers.items() if not k.startswith("Herald-")}
        again["Nats-Msg-Id"] = f"unprocessed.{message.seq}"  # a replay repeated at once is dropped as a duplicate
        await self._bus.js.publish(subject, message.data or b"", headers=again)
        await self._bus.js.delete_msg(STREAM, message.seq or 0)
        return 1

    async def _at(self, sequence: int) -> RawStreamMsg | None:
        try:
            return await self._bus.js.get_msg(STREAM, seq=sequence)
        except NotFoundError:
            return None

    async def _replay(self, sequence: int, category: int, channel: str) -> int:
        """1 when the dead letter was put back; 0 when there is none at `sequence` (already replayed) or it is not
        of the category and channel asked for (a mistyped sequence must not replay someone else's delivery)."""
        if (message := await self._at(sequence)) is None:
            return 0
        record = work_pb2.DeadLetterRecord.FromString(message.data or b"")
        if (category and record.job.category != category) or (channel and record.job.channel != channel):
            return 0
        await self._put_back(sequence, record)
        return 1

    async def _put_back(self, sequence: int, record: work_pb2.DeadLetterRecord) -> None:
        job = record.job
        job.replay += 1
        await delivery_jobs.queue(self._bus, job)
        await self._bus.js.delete_msg(STREAM, sequence)


def _problems(category: int, channel: str) -> dict[str, str]:
    bad: dict[str, str] = {}
    if category and category not in categories.KNOWN:
        bad["category"] = "CRITICAL, NOTIFICATION, MARKETING or unset for all"
    if channel and (why := channels.problem(channel)):
        bad["channel"] = why
    return bad


def _paging_problems(page_size: int, page_token: str) -> dict[str, str]:
    bad: dict[str, str] = {}
    if page_size < 0 or page_size > MAX_PAGE:
        bad["page_size"] = f"between 0 and {MAX_PAGE}"
    if page_token and not (page_token.isdigit() and 0 < int(page_token) <= storable.MAX_INTEGER):
        bad["page_token"] = "a token from a previous response"  # noqa: S105 - not a credential
    return bad


def _sequence_problems(sequences: Sequence[int]) -> dict[str, str]:
    return {
        f"sequences[{i}]": f"a dead letter's sequence, 1 to {storable.MAX_INTEGER}"
        for i, sequence in enumerate(sequences)
        if not 0 < sequence <= storable.MAX_INTEGER
    }


def _consumer_problems(consumer: str) -> dict[str, str]:
    if consumer and not CONSUMER.match(consumer):
        return {"consumer": "a consumer's name, as ListUnprocessedMessages shows it (letters, digits, - and _)"}
    return {}


def _dead_letter(message: RawStreamMsg) -> pb.DeadLetter:
    record = work_pb2.DeadLetterRecord.FromString(message.data or b"")
    job = record.job
    return pb.DeadLetter(
        sequence=message.seq or 0,
        delivery_id=job.delivery_id,
        message_id=job.message_id,
        app_id=job.app_id,
        category=job.category,
        channel=job.channel,
        attempts=record.attempts,
        provider=record.provider,
        reason=record.reason,
        dead_time=record.dead_time,
    )


def _unprocessed(message: RawStreamMsg) -> pb.UnprocessedMessage:
    headers = message.headers or {}
    deliveries = headers.get("Herald-Deliveries", "")
    return pb.UnprocessedMessage(
        sequence=message.seq or 0,
        consumer=headers.get("Herald-Consumer", ""),
        subject=headers.get("Herald-Subject", ""),
        deliveries=int(deliveries) if deliveries.isdigit() else 0,
        reason=headers.get("Herald-Reason", ""),
        dead_time=to_timestamp(message.time) if isinstance(message.time, datetime) else None,
        size_bytes=len(message.data or b""),
    )
