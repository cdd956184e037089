"""Group commit: concurrent Sends share one transaction instead of paying for one each.

Rows that arrive while a commit is running wait for the next one, so under load
a commit carries many Sends and with one caller it carries one - no timer, no
added latency. Every caller returns only after its own rows are committed.
"""

import asyncio
from collections.abc import Sequence

from libs.store import Database
from services.intake import tables


class GroupCommit:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiting: list[tuple[Sequence[tables.Message], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def insert(self, rows: Sequence[tables.Message]) -> None:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((rows, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                async with self._db.session.begin() as session:
                    session.add_all(row for rows, _ in group for row in rows)
            except Exception as e:
                for _, done in group:
                    if not done.done():
                        done.set_exception(e)
                continue
            for _, done in group:
                if not done.done():
                    done.set_result(None)
