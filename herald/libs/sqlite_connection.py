"""The embedded SQLite connection the async engine drives: aiosqlite's interface, one thread hop per statement.

sqlite3 blocks, so its calls run on a thread of their own, as aiosqlite runs them. aiosqlite hops to that thread
for every DB-API call - open a cursor, execute, fetch, close it, and a rollback or two that has nothing to undo -
so one statement in its own session took six hops, about a millisecond of CPU (each hop wakes a thread, moves
the GIL and wakes the event loop again), ten times the statement's own cost through the synchronous driver. Here
a statement is one hop: it executes and its first rows come back together; a cursor is closed on that thread
once its rows are read; commit and rollback hop only when a transaction is open. What SQLAlchemy's aiosqlite
dialect calls is all that is implemented.
"""

import asyncio
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
# Rows brought back with a statement: all of most results, and a bound on what a streamed result (yield_per)
# holds in memory at once; the rest are fetched when asked for.
PREFETCH_ROWS = 50


class SqliteConnection:
    def __init__(self, path: str) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._raw: sqlite3.Connection | None = None

    async def open(self) -> "SqliteConnection":
        self._raw = await self.run(sqlite3.connect, self._path, check_same_thread=False)
        return self

    async def run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`call` on the connection's thread, where every use of the sqlite3 connection happens."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: call(*args, **kwargs))

    @property
    def raw(self) -> sqlite3.Connection:
        if self._raw is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return self._raw

    # What SQLAlchemy's adapter reads: the open sqlite3 connection, or None once closed.
    @property
    def _connection(self) -> sqlite3.Connection | None:
        return self._raw

    @property
    def isolation_level(self) -> str | None:
        return self.raw.isolation_level

    def cursor(self) -> "SqliteCursor":
        return SqliteCursor(self)

    async def commit(self) -> None:
        if self.raw.in_transaction:
            await self.run(self.raw.commit)

    async def rollback(self) -> None:
        if self.raw.in_transaction:
            await self.run(self.raw.rollback)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        await self.run(self.raw.create_function, *args, **kwargs)

    async def close(self) -> None:
        if self._raw is not None:
            raw, self._raw = self._raw, None
            await self.run(raw.close)
        self._thread.shutdown(wait=False)

    def stop(self) -> None:
        """Close without waiting (SQLAlchemy's terminate): the thread closes the connection when it is free."""
        if self._raw is not None:
            self._thread.submit(self._raw.close)
            self._raw = None
        self._thread.shutdown(wait=False)


class SqliteCursor:
    def __init__(self, connection: SqliteConnection) -> None:
        self._connection = connection
        self._cursor: sqlite3.Cursor | None = None
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> "SqliteCursor":
        return self

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> "SqliteCursor":
        await self._connection.run(self._execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Sequence[Any]) -> "SqliteCursor":
        await self._connection.run(self._execute, sql, parameters, many=True)
        return self

    async def fetchone(self) -> Any:
        await self._fill(1)
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        wanted = self.arraysize if size is None else size
        await self._fill(wanted)
        return [self._rows.popleft() for _ in range(min(wanted, len(self._rows)))]

    async def fetchall(self) -> list[Any]:
        if self._cursor is not None:
            self._rows.extend(await self._connection.run(self._rest))
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()
        if self._cursor is not None:
            cursor, self._cursor = self._cursor, None
            await self._connection.run(cursor.close)

    def _execute(self, sql: str, parameters: Any, many: bool = False) -> None:
        """On the connection's thread: run the statement and bring back its first rows; a cursor with none left
        is closed there and then."""
        cursor = self._connection.raw.cursor()
        try:
            if many:
                cursor.executemany(sql, parameters)
            else:
                cursor.execute(sql, parameters)
            self.description, self.rowcount, self.lastrowid = cursor.description, cursor.rowcount, cursor.lastrowid
            rows = cursor.fetchmany(PREFETCH_ROWS) if cursor.description else []
        except BaseException:
            cursor.close()
            raise
        self._rows = deque(rows)
        if len(rows) < PREFETCH_ROWS:
            cursor.close()
        else:
            self._cursor = cursor

    def _rest(self) -> list[Any]:
        assert self._cursor is not None
        rows = self._cursor.fetchall()
        self._cursor.close()
        self._cursor = None
        return rows

    async def _fill(self, wanted: int) -> None:
        if len(self._rows) < wanted and self._cursor is not None:
            self._rows.extend(await self._connection.run(self._more, wanted - len(self._rows)))

    def _more(self, count: int) -> list[Any]:
        assert self._cursor is not None
        asked = max(count, PREFETCH_ROWS)
        rows = self._cursor.fetchmany(asked)
        if len(rows) < asked:
            self._cursor.close()
            self._cursor = None
        return rows
