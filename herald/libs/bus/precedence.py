"""Consumers' ranks: while a batch of a higher rank is in hand, lower-ranked work in the same process waits (see the
package's docstring)."""

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

# The rank of the consumer whose work the current task does; other work (gRPC handlers) has the first rank.
RANK: ContextVar[int] = ContextVar("herald_consumer_rank", default=0)


class Precedence:
    """Holds back lower-ranked work while higher-ranked batches are in hand in this process."""

    def __init__(self) -> None:
        self._in_hand: dict[int, int] = {}
        self._idle: dict[int, asyncio.Event] = {}

    @contextlib.contextmanager
    def holding(self, rank: int) -> Iterator[None]:
        idle = self._idle.setdefault(rank, asyncio.Event())
        self._in_hand[rank] = self._in_hand.get(rank, 0) + 1
        idle.clear()
        try:
            yield
        finally:
            self._in_hand[rank] -= 1
            if not self._in_hand[rank]:
                idle.set()

    async def turn(self) -> None:
        """Return once no batch ranked above the current task's is in hand."""
        rank = RANK.get()
        while busy := [above for above, count in self._in_hand.items() if count and above < rank]:
            await self._idle[busy[0]].wait()
