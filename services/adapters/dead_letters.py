"""DeadLetterService: list and replay the deliveries that failed after their last retry.

Dead letters live in the HERALD_DEAD_LETTERS stream (herald.dead.<category>.<channel>), so they need no table
and survive any herald process. A replay publishes the job again on its delivery subject with `replay` raised,
which gives it a fresh retry budget in the deliverer, and then removes the dead letter from the stream.
"""

import grpc
from herald.v1 import dead_letter_service_pb2 as pb
from herald.v1 import dead_letter_service_pb2_grpc
from nats.js.errors import NotFoundError

from libs import categories, channels, storable, subjects
from libs.auth import require_admin
from libs.bus import Bus
from libs.errors import InvalidArgument

STREAM = "HERALD_DEAD_LETTERS"
DEFAULT_PAGE = 100
MAX_PAGE = 1000


class DeadLetterService(dead_letter_service_pb2_grpc.DeadLetterServiceServicer):
    def __init__(self, bus: Bus, admin_token: str) -> None:
        self._bus = bus
        self._admin_token = admin_token

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        require_admin(context, self._admin_token)
        bad = _problems(request.category, request.channel)
        if request.page_size < 0 or request.page_size > MAX_PAGE:
            bad["page_size"] = f"between 0 and {MAX_PAGE}"
        if request.page_token and not request.page_token.isdigit():
            bad["page_token"] = "a token from a previous response"  # noqa: S105 - not a credential
        if bad:
            raise InvalidArgument(bad)
        subject = subjects.dead_letter(request.category, request.channel)
        size = request.page_size or DEFAULT_PAGE
        sequence = int(request.page_token or 1)
        found: list[pb.DeadLetter] = []
        while len(found) <= size:
            entry = await self._next(sequence, subject)
            if entry is None:
                break
            found.append(entry)
            sequence = entry.sequence + 1
        token = str(found[size].sequence) if len(found) > size else ""
        return pb.ListDeadLettersResponse(dead_letters=found[:size], next_page_token=token)

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayDeadLettersResponse:
        require_admin(context, self._admin_token)
        bad = _problems(request.category, request.channel)
        for i, sequence in enumerate(request.sequences):
            if not 0 < sequence <= storable.MAX_INTEGER:
                bad[f"sequences[{i}]"] = f"a dead letter's sequence, 1 to {storable.MAX_INTEGER}"
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

    async def _next_record(self, sequence: int, subject: str) -> tuple[int, pb.DeadLetterRecord] | None:
        """The first dead letter on `subject` at or after `sequence`, with its own sequence."""
        try:
            message = await self._bus.js.get_msg(STREAM, seq=sequence, subject=subject, next=True)
        except NotFoundError:
            return None
        return message.seq or 0, pb.DeadLetterRecord.FromString(message.data or b"")

    async def _next(self, sequence: int, subject: str) -> pb.DeadLetter | None:
        found = await self._next_record(sequence, subject)
        if found is None:
            return None
        sequence, record = found
        job = record.job
        return pb.DeadLetter(
            sequence=sequence,
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

    async def _replay(self, sequence: int, category: int, channel: str) -> int:
        """1 when the dead letter was put back; 0 when there is none at `sequence` (already replayed) or it is not
        of the category and channel asked for (a mistyped sequence must not replay someone else's delivery)."""
        try:
            message = await self._bus.js.get_msg(STREAM, seq=sequence)
        except NotFoundError:
            return 0
        record = pb.DeadLetterRecord.FromString(message.data or b"")
        if (category and record.job.category != category) or (channel and record.job.channel != channel):
            return 0
        await self._put_back(sequence, record)
        return 1

    async def _put_back(self, sequence: int, record: pb.DeadLetterRecord) -> None:
        job = record.job
        job.replay += 1
        await self._bus.publish(
            subjects.delivery_job(job.category, job.channel),
            job.SerializeToString(),
            msg_id=f"{job.delivery_id}.replay.{job.replay}",
        )
        await self._bus.js.delete_msg(STREAM, sequence)


def _problems(category: int, channel: str) -> dict[str, str]:
    bad: dict[str, str] = {}
    if category and category not in categories.KNOWN:
        bad["category"] = "CRITICAL, NOTIFICATION, MARKETING or unset for all"
    if channel and (why := channels.problem(channel)):
        bad["channel"] = why
    return bad
