"""Group commit: concurrent Sends share one transaction instead of paying for one each.

Rows that arrive while a commit is running wait for the next one, so under load
a commit carries many Sends and with one caller it carries one - no timer, no
added latency. Every caller returns only after its own rows are committed. A group
that fails for a reason other than an outage is committed again caller by caller,
so one caller's bad row fails only that caller.

Each caller then publishes its own messages: a publish carries its caller's trace
context, and concurrent Sends are traces of their own.
"""

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert

from libs.errors import TRANSIENT
from libs.store import Database
from services.intake import tables

Row = dict[str, Any]
# A caller's intake_messages rows, and the future it waits on.
Waiting = tuple[Sequence[Row], asyncio.Future[None]]


class GroupCommit:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiting: list[Waiting] = []
        self._flusher: asyncio.Task[None] | None = None

    async def insert(self, rows: Sequence[Row]) -> None:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((rows, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                await self._commit(group)
            except Exception as e:
                if len(group) == 1 or isinstance(e, TRANSIENT):
                    _fail(group, e)
                    continue
                for one in group:  # find the caller whose rows cannot be stored
                    try:
                        await self._commit([one])
                    except Exception as alone:
                        _fail([one], alone)

    async def _commit(self, group: list[Waiting]) -> None:
        """Core, not ORM: a SendBatch stores hundreds of rows at once."""
        async with self._db.session.begin() as session:
            await session.execute(insert(tables.Message), [row for rows, _ in group for row in rows])
        for _, done in group:
            if not done.done():
                done.set_result(None)


def _fail(group: list[Waiting], error: Exception) -> None:
    for _, done in group:
        if not done.done():
            done.set_exception(error)
