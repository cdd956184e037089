"""What every fake provider does alike: serve on a loopback port until stopped, record what it took, and answer
late when a test says so. Each vendor's fake, beside its tests, keeps what is its own: the wire checks and the
answers of that vendor, written from the vendor's documentation."""

import asyncio
import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Generic, Self, TypeVar

from aiohttp import web

R = TypeVar("R")


@dataclass(frozen=True)
class Request:
    """An HTTP request as a fake took it, for vendors whose tests need no more than that."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @classmethod
    async def of(cls, request: web.Request) -> "Request":
        return cls(request.path, dict(request.query), dict(request.headers), await request.read())


@dataclass(kw_only=True)
class FakeProvider(ABC, Generic[R]):
    scheme: ClassVar[str] = "http"
    # What the fake took, in the order it came, as its vendor's fake records it.
    received: list[R] = field(default_factory=list)
    # Seconds to wait before answering; stopping the fake cuts the wait short, so no test waits on a fake it is
    # done with.
    delay: float = 0.0
    # 0 until started; started again, the fake listens on the same port.
    port: int = 0
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._stopping.clear()
        self.port = await self._listen(self.port)

    async def stop(self) -> None:
        """Stop listening and close every connection: afterwards the port refuses them."""
        self._stopping.set()
        await self._close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def stall(self) -> None:
        """Wait `delay` seconds before answering, or until the fake stops."""
        if self.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay)

    @abstractmethod
    async def _listen(self, port: int) -> int:
        """Serve on 127.0.0.1:`port` (0: any free one); return the port."""

    @abstractmethod
    async def _close(self) -> None: ...


@dataclass(kw_only=True)
class FakeHttpProvider(FakeProvider[R]):
    """A fake provider that is an aiohttp app of the routes its vendor's fake lists."""

    _runner: web.AppRunner | None = field(default=None, init=False, repr=False)

    @abstractmethod
    def routes(self) -> list[web.RouteDef]: ...

    async def _listen(self, port: int) -> int:
        app = web.Application()
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        bound: int = self._runner.addresses[0][1]
        return bound

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
