"""Live inbox updates across adapters replicas: whoever changes a user's timeline announces the sequences it
touched on core NATS; each replica's Subscribe streams for that user listen and re-read. Notices are not stored,
so a stream also re-reads on a timer (RECHECK, sooner while it is new) in case one was missed."""

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from herald.libs import subjects
from herald.libs.bus import Bus
from herald.services.adapters.inbox.timeline_store import Owner

# The longest a stream relies on notices alone before it looks at the timeline itself.
RECHECK = 5.0
# A new stream's first re-reads come sooner: until its interest has reached every server of a NATS cluster, a
# notice published through another server passes it by.
FIRST_RECHECKS = (0.25, 0.5, 1.0, 2.0)


def _subject(owner: Owner) -> str:
    return subjects.inbox(owner.app_id, user_key(owner))


async def announce(bus: Bus, owner: Owner, seqs: Iterable[int], *, changed: bool) -> None:
    """New items (`changed` False), or items read or deleted since a device got them."""
    await bus.announce(_subject(owner), _notice(seqs, changed))


async def announce_watched(bus: Bus, owner: Owner, seqs: Iterable[int]) -> bool:
    """New items, and whether a device is watching the user's inbox: a live Subscribe stream on any replica."""
    return await bus.announce_asking(_subject(owner), _notice(seqs, False))


def user_key(owner: Owner) -> str:
    """The user's id as it may appear in a subject: hashed, since user ids are not subject tokens."""
    return hashlib.sha256(owner.user_id.encode()).hexdigest()[:24]


def _notice(seqs: Iterable[int], changed: bool) -> bytes:
    return json.dumps({"seqs": sorted(seqs), "changed": changed}).encode()


@asynccontextmanager
async def watch(bus: Bus, owner: Owner) -> AsyncIterator["Changes"]:
    async with bus.notices(_subject(owner)) as queue:
        yield Changes(queue)


class Changes:
    def __init__(self, queue: asyncio.Queue[bytes]) -> None:
        self._queue = queue
        self._waits = iter(FIRST_RECHECKS)

    async def next(self) -> set[int]:
        """Waits for notices up to the next re-read (FIRST_RECHECKS, then RECHECK); returns the sequences of changed
        items among them (new items need no list: the stream reads everything after its cursor anyway)."""
        try:
            notices = [await asyncio.wait_for(self._queue.get(), next(self._waits, RECHECK))]
        except TimeoutError:
            return set()
        while not self._queue.empty():
            notices.append(self._queue.get_nowait())
        return {seq for n in map(json.loads, notices) if n["changed"] for seq in n["seqs"]}
