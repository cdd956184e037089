"""The HTTP client for the URLs callers give herald (webhook deliveries, apps' status webhooks): HTTP/1.1 with
kept-alive connections per origin, the answer read by httptools (llhttp, Node.js's parser), and every address it
connects to checked by the SSRF guard (ssrf.resolve) - so a name cannot resolve publicly for a check and privately a
moment later (DNS rebinding), and a delivery over a kept-alive connection costs no lookup.

Why not aiohttp, as the provider plug-ins use: a POST through this client costs about a third of the CPU one through
aiohttp's ClientSession does (docs/benchmarks.md, "Webhooks over a lean HTTP/1.1 client"), and aiohttp's had been
the largest part of a webhook delivery's cost. A webhook needs none of what aiohttp adds: no cookies, redirects
(never followed: a public endpoint must not bounce a request inward), proxies, compression or streaming.

Every failure to get an answer is a `TransportError`, but `TimeoutError` (the call's time ran out) and
`ssrf.BlockedDestination` (the guard refused the address, or it cannot be a URL); a header that would split the
request (CR, LF, NUL) is a ValueError.
"""

import asyncio
import base64
import collections
import functools
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import cast

import httptools
from multidict import CIMultiDict

from herald.libs import channels, ssrf
from herald.services.adapters.channels.http import Response

# An answer's body beyond this is read and dropped: what a receiver says back (a request id, an error) is short.
MAX_BODY = 64 * 1024
# A connection idle longer than this is closed rather than reused: receivers close theirs after 5-75 s of quiet.
KEEP_ALIVE = 15.0
_UNSAFE = re.compile(r"[\r\n\0]")


class TransportError(Exception):
    """No HTTP answer: the receiver could not be reached, closed the connection, or answered what is not HTTP."""


@dataclass(frozen=True)
class _Target:
    """A URL as the client sends to it, parsed once per address (channels.webhook_url: as intake read it)."""

    origin: tuple[str, str, int]  # scheme, host (as DNS and TLS take it: an IDN in punycode), port
    head: str  # the request line's target and the Host (and Authorization) lines: "/path?q HTTP/1.1\r\nHost: ..."


@functools.lru_cache(maxsize=4096)
def _target(url: str) -> _Target:
    parsed = channels.webhook_url(url)
    assert parsed.raw_host is not None, "webhook_url requires a host"
    assert parsed.port is not None, "and an http or https URL has a port"
    path, host = parsed.raw_path_qs or "/", parsed.host_port_subcomponent or ""
    if _UNSAFE.search(path + host):
        raise ValueError("a URL that would split the request")
    head = f"{path} HTTP/1.1\r\nHost: {host}\r\n"
    if parsed.user is not None:  # http://user:password@host/: basic authentication, as browsers and curl send it
        credentials = f"{parsed.user}:{parsed.password or ''}".encode()
        head += f"Authorization: Basic {base64.b64encode(credentials).decode()}\r\n"
    return _Target((parsed.scheme, parsed.raw_host, parsed.port), head)


class _Connection(asyncio.Protocol):
    """One connection: writes a request, reads its answer into a future."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[Response] | None = None
        self._headers: list[tuple[str, str]] = []
        self._body = bytearray()
        self._headers_done = False
        self._received = False
        self._ends_with_connection = False
        self.keep_alive = False

    def send(self, request: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._headers, self._body, self._headers_done, self._received = [], bytearray(), False, False
        self.transport.write(request)
        return self._answer

    @property
    def answered_anything(self) -> bool:
        return self._received

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, but not by inheritance

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(TransportError(f"the answer is not HTTP: {e}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is None or self._answer.done():
            return
        if self._headers_done and self._ends_with_connection:  # no Content-Length, not chunked: the body ran to here
            status = self._parser.get_status_code()
            self._answer.set_result(Response(status, CIMultiDict(self._headers), bytes(self._body)))
        else:
            self._fail(TransportError(f"the connection closed before the answer was complete ({exc or 'EOF'})"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # httptools' callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        framed = {n.lower() for n, _ in self._headers} & {"content-length", "transfer-encoding"}
        self._ends_with_connection = not framed

    def on_body(self, body: bytes) -> None:
        if len(self._body) < MAX_BODY:
            self._body += body[: MAX_BODY - len(self._body)]

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: the answer is still to come
            self._headers, self._headers_done = [], False
            return
        self.keep_alive = self._parser.should_keep_alive()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(Response(status, CIMultiDict(self._headers), bytes(self._body)))

    def _fail(self, error: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)


class WebhookClient:
    """At most `limit` calls at once; connections kept alive per origin (scheme, host, port) for the next call."""

    def __init__(self, allowed_hosts: frozenset[str], limit: int = 100) -> None:
        self._allowed = allowed_hosts
        self._slots = asyncio.Semaphore(limit)
        self._idle: dict[tuple[str, str, int], collections.deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._swept = time.monotonic()
        self._tls = ssl.create_default_context()

    async def post(
        self, url: str, headers: dict[str, str], body: bytes, seconds: float, connect_seconds: float | None = None
    ) -> Response:
        """POST `body` to `url`, within `seconds` in all (`connect_seconds` of them to connect)."""
        try:
            target = _target(url)
        except ValueError as e:
            raise ssrf.BlockedDestination(str(e)) from None
        lines = [f"{name}: {value}\r\n" for name, value in headers.items()]
        if _UNSAFE.search("".join(headers) + "".join(headers.values())):
            raise ValueError("a header name or value with CR, LF or NUL would split the request")
        request = f"POST {target.head}Content-Length: {len(body)}\r\n{''.join(lines)}\r\n".encode("latin-1") + body
        async with asyncio.timeout(seconds), self._slots:
            connection, reused = self._kept(target.origin), True
            if connection is None:
                connection, reused = await self._connect(target.origin, connect_seconds or seconds), False
            try:
                answer = await self._exchange(connection, request)
            except TransportError:
                if not reused or connection.answered_anything:
                    raise
                # The receiver closed the kept-alive connection as we reused it, before reading the request: send
                # it once more on a new one (receivers drop repeats by the delivery's key all the same).
                connection = await self._connect(target.origin, connect_seconds or seconds)
                answer = await self._exchange(connection, request)
        if connection.keep_alive and not connection.closed:
            connection.idle_since = now = time.monotonic()
            self._idle.setdefault(target.origin, collections.deque()).append(connection)
            if now - self._swept > KEEP_ALIVE:
                self._sweep(now)
        else:
            self._forget(connection)
        return answer

    async def close(self) -> None:
        for connection in list(self._open):
            self._forget(connection)

    async def _exchange(self, connection: _Connection, request: bytes) -> Response:
        try:
            return await connection.send(request)
        except BaseException:  # the time ran out, the call was cancelled, or no answer: the connection is spent
            self._forget(connection)
            raise

    def _kept(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle, oldest = self._idle.get(origin), time.monotonic() - KEEP_ALIVE
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_since > oldest:
                return connection
            self._forget(connection)
        return None

    async def _connect(self, origin: tuple[str, str, int], seconds: float) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = self._tls if scheme == "https" else None
        errors = []
        async with asyncio.timeout(seconds):
            try:
                addresses = await ssrf.resolve(host, port, self._allowed)
            except socket.gaierror as e:  # an allowed host that does not resolve (others are BlockedDestination)
                raise TransportError(f"{host} does not resolve: {e.strerror}") from e
            for address in addresses:
                try:
                    _, connection = await loop.create_connection(
                        _Connection, address, port, ssl=tls, server_hostname=host if tls else None
                    )
                except OSError as e:  # refused, unreachable, a TLS handshake that failed: try the next address
                    errors.append(f"{address}: {e}")
                    continue
                self._open.add(connection)
                return connection
        raise TransportError(f"cannot connect to {host}:{port}: {'; '.join(errors)}")

    def _sweep(self, now: float) -> None:
        """Close the connections idle too long, to every origin: delivering to many receivers, the client would
        otherwise keep one open to each it ever reached."""
        self._swept, oldest = now, now - KEEP_ALIVE
        for origin, idle in list(self._idle.items()):
            kept = collections.deque(c for c in idle if not c.closed and c.idle_since > oldest)
            for connection in set(idle) - set(kept):
                self._forget(connection)
            if kept:
                self._idle[origin] = kept
            else:
                del self._idle[origin]

    def _forget(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)
