"""A budget of units taken and given back, for admitting work by its size rather than one item at a time."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Budget:
    """At most `size` units taken at once; a taker waits until all it asks for is free (one asking for more than
    `size` takes all of it)."""

    def __init__(self, size: int) -> None:
        self._size = self._free = size
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def taking(self, units: int) -> AsyncIterator[None]:
        units = min(units, self._size)
        async with self._changed:
            await self._changed.wait_for(lambda: self._free >= units)
            self._free -= units
        try:
            yield
        finally:
            async with self._changed:
                self._free += units
                self._changed.notify_all()
