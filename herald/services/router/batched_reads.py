"""Reads of one fetched batch made together.

The handlers of one batch start together (libs.bus.each), and each asks for its own message's rows before anything
else. What they ask for in the same turn of the event loop is read together: one query per batch instead of one per
message.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BatchedReader(Generic[K, V]):
    def __init__(self, read: Callable[[set[K]], Awaitable[V]]) -> None:
        self._read_keys = read
        self._asked: set[K] = set()
        self._answer: asyncio.Future[V] | None = None
        self._reads: set[asyncio.Task[None]] = set()

    async def load(self, keys: set[K]) -> V:
        """The answer of a read covering at least `keys`."""
        if self._answer is None:
            self._answer = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._read)
        self._asked |= keys
        # Shielded: a waiter that is cancelled must not cancel the read the others wait for.
        return await asyncio.shield(self._answer)

    def _read(self) -> None:
        asked, answer = self._asked, self._answer
        self._asked, self._answer = set(), None
        assert answer is not None
        read = asyncio.create_task(self._fill(asked, answer))
        self._reads.add(read)
        read.add_done_callback(self._reads.discard)

    async def _fill(self, keys: set[K], answer: asyncio.Future[V]) -> None:
        try:
            answer.set_result(await self._read_keys(keys))
        except Exception as e:
            answer.set_exception(e)
