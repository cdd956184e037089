"""The one decision per message that a cancel and the router race for: dispatched or cancelled.

Both sides record their decision with a KV create, which only the first can
win, so across every replica a message is either fanned out to the adapters or
withdrawn, never both. intake's CancelMessage asks for CANCELLED; the router
asks for DISPATCHED just before it queues delivery jobs.

A dispatched message's escalation steps still wait for their time: a cancel
then stops them (`stop_escalation`), and a step that fires anyway finds that
before it is routed.
"""

import asyncio
from collections.abc import Sequence
from enum import Enum

from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

from herald.libs.bus import DAY, Bucket, KeyValues

BUCKET = "herald_dispatch"
# The reason on an escalation step a cancel stopped, wherever it is stopped.
ESCALATION_STOPPED = "cancelled by the sender (CancelMessage) before this escalation step was due"
# Longer than HERALD_MESSAGES keeps a message, so a redelivered message still finds its decision.
TTL = 8 * DAY


class Decision(Enum):
    DISPATCHED = "dispatched"
    CANCELLED = "cancelled"


class DispatchLedger:
    def __init__(self, kv: Bucket) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, bus: KeyValues) -> "DispatchLedger":
        return cls(await bus.key_value(BUCKET, ttl=TTL))

    async def decide(self, message_id: str, wanted: Decision) -> Decision:
        """Record `wanted` unless a decision was already taken; returns the decision that stands."""
        try:
            await self._kv.create(message_id, wanted.value.encode())
        except KeyWrongLastSequenceError:
            taken = await self.decided(message_id)
            assert taken is not None, f"the decision on {message_id} was there a moment ago"
            return taken
        return wanted

    async def decide_all(self, message_ids: Sequence[str], wanted: Decision) -> list[Decision | Exception]:
        """`decide` for each of a batch's messages, the records written together: the decision that stands for
        each, or why it could not be taken."""
        created = await self._kv.create_all([(m, wanted.value.encode()) for m in message_ids])
        taken: list[Decision | Exception] = [wanted if isinstance(c, int) else c for c in created]
        raced = [i for i, c in enumerate(created) if isinstance(c, KeyWrongLastSequenceError)]
        # Taken before (a cancel won, or this batch is redelivered): read which - or, for a key deleted since
        # (which a create may write over), `decide` again.
        found = await asyncio.gather(*(self._taken(message_ids[i], wanted) for i in raced), return_exceptions=True)
        for i, decision in zip(raced, found, strict=True):
            if isinstance(decision, BaseException) and not isinstance(decision, Exception):
                raise decision
            taken[i] = decision
        return taken

    async def _taken(self, message_id: str, wanted: Decision) -> Decision:
        return await self.decided(message_id) or await self.decide(message_id, wanted)

    async def stop_escalation(self, message_id: str) -> None:
        await self._kv.put(_escalation_key(message_id), b"stopped")

    async def escalation_stopped(self, message_id: str) -> bool:
        try:
            await self._kv.get(_escalation_key(message_id))
        except (KeyNotFoundError, KeyDeletedError):
            return False
        return True

    async def decided(self, message_id: str) -> Decision | None:
        """The decision taken for the message, if one was."""
        try:
            entry = await self._kv.get(message_id)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        return Decision((entry.value or b"").decode())


def _escalation_key(message_id: str) -> str:
    return f"{message_id}.escalation"
