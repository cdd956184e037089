"""A large audience as it streams into SendAudience: each chunk checked and stored as one part, never all in memory."""

import re
from collections.abc import Awaitable, Callable

from herald.v1 import message_service_pb2 as pb
from sqlalchemy import delete

from herald.internal.v1 import work_pb2
from herald.libs.auth import AppIdentity
from herald.libs.errors import InvalidArgument
from herald.libs.store import Database
from herald.services.intake import tables
from herald.services.intake.common_part import CommonPart

MAX_AUDIENCE = 1_000_000

Prepare = Callable[[AppIdentity, pb.SendRequest, CommonPart], Awaitable[work_pb2.AcceptedMessage]]


class Audience:
    """A large audience as it streams in: each chunk validated, render-checked and stored as one part."""

    def __init__(
        self, db: Database, prepare: Prepare, app: AppIdentity, header: pb.SendRequest, message_id: str
    ) -> None:
        self._db = db
        self._prepare = prepare
        self._app = app
        self._header = header
        self.message_id = message_id
        self.parts = 0
        self.recipients = 0
        self.complete = False
        self._first: work_pb2.AcceptedMessage | None = None
        self._common = CommonPart(app)

    async def add(self, recipients: list[pb.Recipient]) -> None:
        if not recipients:
            return
        if self.recipients + len(recipients) > MAX_AUDIENCE:
            raise InvalidArgument({"recipients": f"at most {MAX_AUDIENCE} recipients per audience"})
        chunk = pb.SendRequest()
        chunk.CopyFrom(self._header)
        del chunk.recipients[:]
        chunk.recipients.extend(recipients)
        try:
            accepted = await self._prepare(self._app, chunk, self._common)
        except InvalidArgument as e:  # name recipients by their place in the whole audience
            raise InvalidArgument({_shift(field, self.recipients): why for field, why in e.fields.items()}) from e
        accepted.message_id = self.message_id
        accepted.part = self.parts
        accepted.recipient_offset = self.recipients
        self._first = self._first or accepted
        if not self._header.dry_run:
            async with self._db.session.begin() as session:
                session.add(
                    tables.MessagePart(
                        message_id=self.message_id, part=self.parts, payload=accepted.SerializeToString()
                    )
                )
        self.parts += 1
        self.recipients += len(recipients)

    @property
    def first(self) -> work_pb2.AcceptedMessage:
        """The first part, which stands for the message in intake's own row."""
        assert self._first is not None
        return self._first

    async def discard(self) -> None:
        """The stream broke or was refused: nothing of it may be sent."""
        async with self._db.session.begin() as session:
            await session.execute(delete(tables.MessagePart).where(tables.MessagePart.message_id == self.message_id))


def _shift(field: str, offset: int) -> str:
    return re.sub(r"^recipients\[(\d+)\]", lambda m: f"recipients[{int(m.group(1)) + offset}]", field)
