"""The webhooks' HTTP client against receivers that answer as real servers do, byte for byte: a kept-alive
connection serves the next delivery; a chunked answer, one that ends with its connection, and an interim 100 are read
whole; a receiver that closed a kept-alive connection as it was reused still gets the delivery, and one no longer
sent to is not kept connected; one that does not
answer in time, or answers what is not HTTP, is an error the retry policy can act on; and nothing in a header or a
URL can split the request."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from herald.libs import ssrf
from herald.services.adapters import webhook_client
from herald.services.adapters.webhook_client import TransportError, WebhookClient

LOOPBACK = frozenset({"127.0.0.1"})
# How a receiver answers one request: what it writes back on the connection, or None to close it unanswered.
Answering = Callable[[bytes], Awaitable[bytes | None]]


class Receiver:
    """A raw TCP receiver on loopback: reads each request whole (head and Content-Length body), answers as told."""

    def __init__(self, answering: Answering, close_after: bool) -> None:
        self.answering = answering
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.open = 0
        self.port = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = await self.answering(request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


@asynccontextmanager
async def receiving(answering: Answering, close_after: bool = False) -> AsyncIterator[tuple[Receiver, WebhookClient]]:
    """A receiver answering each request as `answering` says (closing the connection after each with
    `close_after`), and a client that may reach it."""
    receiver = Receiver(answering, close_after)
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    client = WebhookClient(LOOPBACK)
    try:
        yield receiver, client
    finally:
        await client.close()
        server.close()


def answer(raw: bytes) -> Answering:
    async def answering(_: bytes) -> bytes:
        return raw

    return answering


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: r1\r\n\r\nok"


async def test_a_kept_alive_connection_serves_the_next_delivery() -> None:
    async with receiving(answer(OK)) as (receiver, client):
        for n in range(3):
            reply = await client.post(receiver.url(), {"Idempotency-Key": f"d{n}"}, b'{"n": 1}', 5)
            assert (reply.status, reply.headers["x-request-id"], reply.body) == (200, "r1", b"ok")
    assert receiver.connections == 1
    first = receiver.requests[0]
    assert first.startswith(b"POST /hook HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{receiver.port}\r\n".encode() in first
    assert b"Content-Length: 8\r\n" in first
    assert b"Idempotency-Key: d0\r\n" in first
    assert first.endswith(b'\r\n\r\n{"n": 1}')


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 3\r\n\r\nyes", b"yes"),
    ],
    ids=["chunked", "interim-100"],
)
async def test_an_answer_is_read_whole_however_it_is_framed(raw: bytes, body: bytes) -> None:
    async with receiving(answer(raw)) as (receiver, client):
        reply = await client.post(receiver.url(), {}, b"{}", 5)
    assert reply.ok
    assert reply.body == body


async def test_an_answer_that_ends_with_its_connection_is_read_whole() -> None:
    async with receiving(answer(b"HTTP/1.0 200 OK\r\nX-Request-Id: r2\r\n\r\nall of it"), close_after=True) as (
        receiver,
        client,
    ):
        for _ in range(2):  # and the next goes on a new connection
            reply = await client.post(receiver.url(), {}, b"{}", 5)
            assert (reply.status, reply.headers["X-Request-Id"], reply.body) == (200, "r2", b"all of it")
    assert receiver.connections == 2


async def test_a_receiver_closing_a_kept_alive_connection_as_it_is_reused_still_gets_the_delivery() -> None:
    answered = 0

    async def once_per_connection(_: bytes) -> bytes | None:
        nonlocal answered
        answered += 1
        return OK if answered % 2 else None  # every second request finds its connection closed, unanswered

    async with receiving(once_per_connection) as (receiver, client):
        for _ in range(2):
            assert (await client.post(receiver.url(), {}, b"{}", 5)).status == 200
    assert receiver.connections == 2
    assert len(receiver.requests) == 3  # the one sent on the closing connection, then again on a new one


async def test_a_receiver_that_does_not_answer_in_time_times_out() -> None:
    async def never(_: bytes) -> bytes:
        await asyncio.sleep(30)
        return OK

    async with receiving(never) as (receiver, client):
        with pytest.raises(TimeoutError):
            await client.post(receiver.url(), {}, b"{}", 0.3)


async def test_a_receiver_no_longer_sent_to_is_not_kept_connected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_client, "KEEP_ALIVE", 0.2)
    async with receiving(answer(OK)) as (quiet, client), receiving(answer(OK)) as (busy, _):
        await client.post(quiet.url(), {}, b"{}", 5)
        await asyncio.sleep(0.3)
        await client.post(busy.url(), {}, b"{}", 5)  # a delivery elsewhere, after the first's connection went idle
        async with asyncio.timeout(5):
            while quiet.open:
                await asyncio.sleep(0.01)
        assert busy.open == 1


async def test_an_answer_that_is_not_http_is_a_transport_error() -> None:
    async with receiving(answer(b"SSH-2.0-OpenSSH_9.2\r\n")) as (receiver, client):
        with pytest.raises(TransportError, match="not HTTP"):
            await client.post(receiver.url(), {}, b"{}", 5)


async def test_a_receiver_that_is_not_listening_is_a_transport_error() -> None:
    async with receiving(answer(OK)) as (receiver, _):
        port = receiver.port
    client = WebhookClient(LOOPBACK)
    try:
        with pytest.raises(TransportError, match="cannot connect"):
            await client.post(f"http://127.0.0.1:{port}/gone", {}, b"{}", 5)
    finally:
        await client.close()


async def test_nothing_in_a_header_or_the_url_splits_the_request() -> None:
    async with receiving(answer(OK)) as (receiver, client):
        with pytest.raises(ValueError, match="split"):
            await client.post(receiver.url(), {"X-Note": "a\r\nX-Injected: 1"}, b"{}", 5)
        with pytest.raises(ssrf.BlockedDestination):
            await client.post(receiver.url("/a\r\nX-Injected: 1"), {}, b"{}", 5)
    assert receiver.requests == []


async def test_credentials_in_the_url_go_as_basic_authentication() -> None:
    async with receiving(answer(OK)) as (receiver, client):
        await client.post(receiver.url().replace("http://", "http://hook:s3cret@"), {}, b"{}", 5)
    assert b"Authorization: Basic aG9vazpzM2NyZXQ=\r\n" in receiver.requests[0]
