"""The test side of the HTTP edge: a client for herald-gateway speaking the Connect protocol and gRPC-Web as
their specifications frame them (connectrpc.com/docs/protocol, grpc/doc/PROTOCOL-WEB.md), with nothing of
herald's own code, so the tests check the wire a third party's client sees."""

import base64
import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from google.rpc import error_details_pb2

END_STREAM = 0x02  # Connect: the last envelope of a stream, holding its end-of-stream JSON
TRAILERS = 0x80  # gRPC-Web: the envelope holding the trailers


def envelope(payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


def envelopes(body: bytes) -> list[tuple[int, bytes]]:
    found, at = [], 0
    while at < len(body):
        flags, size = struct.unpack_from(">BI", body, at)
        found.append((flags, body[at + 5 : at + 5 + size]))
        at += 5 + size
    return found


async def next_messages(chunks: AsyncIterator[bytes], buffer: bytearray) -> list[dict[str, Any]]:
    """The JSON messages of the next complete envelopes of a live stream, reading `chunks` until there is one;
    what follows them stays in `buffer`."""
    while True:
        found = []
        while len(buffer) >= 5:
            flags, size = struct.unpack_from(">BI", buffer)
            if len(buffer) < 5 + size:
                break
            payload = bytes(buffer[5 : 5 + size])
            del buffer[: 5 + size]
            assert not flags & END_STREAM, json.loads(payload)
            found.append(json.loads(payload))
        if found:
            return found
        buffer.extend(await anext(chunks))


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


@dataclass
class Answer:
    """A unary call's answer: the HTTP status and either the message (JSON) or the Connect error."""

    status: int
    headers: httpx.Headers
    body: dict[str, Any]

    @property
    def code(self) -> str:
        return str(self.body.get("code", "ok")) if self.status != 200 else "ok"

    def bad_fields(self) -> dict[str, str]:
        """Field -> description of the google.rpc.BadRequest detail, as a Connect client decodes it."""
        fields: dict[str, str] = {}
        for detail in self.body.get("details", []):
            if detail["type"] == "google.rpc.BadRequest":
                bad = error_details_pb2.BadRequest.FromString(base64.b64decode(detail["value"] + "=="))
                fields.update({v.field: v.description for v in bad.field_violations})
        return fields


async def call(
    http: httpx.AsyncClient, procedure: str, message: dict[str, Any], token: str = "", **headers: str
) -> Answer:
    """A unary call with a JSON body, as `curl -H 'Content-Type: application/json' -d ...` makes it."""
    reply = await http.post(
        f"/{procedure}",
        content=json.dumps(message),
        headers={"content-type": "application/json", **bearer(token), **headers},
    )
    body = reply.json() if reply.content else {}
    return Answer(reply.status_code, reply.headers, body)


async def stream(
    http: httpx.AsyncClient, procedure: str, messages: list[dict[str, Any]], token: str = "", timeout_ms: int = 0
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A streaming call (Connect streaming, JSON): the messages received and the end-of-stream JSON."""
    headers = {"content-type": "application/connect+json", **bearer(token)}
    if timeout_ms:
        headers["connect-timeout-ms"] = str(timeout_ms)
    body = b"".join(envelope(json.dumps(m).encode()) for m in messages)
    reply = await http.post(f"/{procedure}", content=body, headers=headers)
    assert reply.status_code == 200, (procedure, reply.status_code, reply.text)
    received, end = [], {}
    for flags, payload in envelopes(reply.content):
        if flags & END_STREAM:
            end = json.loads(payload)
        else:
            received.append(json.loads(payload))
    return received, end


async def grpc_web(http: httpx.AsyncClient, procedure: str, message: bytes, token: str = "") -> tuple[int, bytes]:
    """A gRPC-Web call (binary messages), as a browser's grpc-web client sends it: the grpc-status and the first
    message (b"" without one)."""
    reply = await http.post(
        f"/{procedure}",
        content=envelope(message),
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1", **bearer(token)},
    )
    assert reply.status_code == 200, (procedure, reply.status_code, reply.text)
    trailers = dict(reply.headers)
    first = b""
    for flags, payload in envelopes(reply.content):
        if flags & TRAILERS:
            for line in payload.decode().split("\r\n"):
                if ":" in line:
                    name, _, value = line.partition(":")
                    trailers[name.strip().lower()] = value.strip()
        elif not first:
            first = payload
    return int(trailers["grpc-status"]), first
