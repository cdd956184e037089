"""KV buckets whose writes go through the bus's PubAcks.

A KV write is a JetStream publish to the bucket's stream; nats-py's own costs a process what PubAcks saves on every
publish (pubacks.py), and the router writes one per message it dispatches (the dispatch ledger), the adapters one
per paced call (the rate limiter). Reads, watches and the errors are nats-py's.
"""

import re
from collections.abc import Sequence

from nats.js import JetStreamContext, api
from nats.js.client import KV_PRE_TEMPLATE
from nats.js.errors import APIError, InvalidKeyError, KeyWrongLastSequenceError
from nats.js.kv import VALID_KEY_RE, KeyValue

from herald.libs.bus.pubacks import PubAcks

# Where a PubAck says which sequence it stored.
_SEQ = re.compile(rb'"seq":\s*(\d+)')
# JSStreamWrongLastSequenceErrF and JSStreamWrongLastSequenceConstantErr, as nats-py's KeyValue reads them.
_WRONG_LAST_SEQUENCE = (10071, 10164)


class AckedKeyValue(KeyValue):
    def __init__(self, bucket: str, stream: api.StreamInfo, js: JetStreamContext, acks: PubAcks) -> None:
        """`stream`: the bucket's stream as the bus read it; whether it allows direct gets decides how nats-py reads
        keys."""
        self._subject_prefix = KV_PRE_TEMPLATE.format(bucket=bucket)
        super().__init__(
            name=bucket,
            stream=stream.config.name or "",
            pre=self._subject_prefix,
            js=js,
            direct=bool(stream.config.allow_direct),
        )
        self._acks = acks

    async def put(self, key: str, value: bytes, validate_keys: bool = True) -> int:
        if validate_keys:
            _check(key)
        return await self._write(key, value, {})

    async def _update(
        self,
        key: str,
        value: bytes,
        last: int | None = None,
        validate_keys: bool = True,
        msg_ttl: float | None = None,
    ) -> int:
        if msg_ttl is not None:  # herald sets none; nats-py's own way keeps its meaning
            return await super()._update(key, value, last, validate_keys, msg_ttl)
        if validate_keys:
            _check(key)
        try:
            return await self._write(key, value, {api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(last or 0)})
        except APIError as e:
            raise _as_kv_error(e) from e

    async def create_all(self, entries: Sequence[tuple[str, bytes]]) -> list[int | Exception]:
        """`create` of each (key, value), their PubAcks awaited together: the revision written, or the error - a
        key that exists (or was deleted: `create` writes over that) gives KeyWrongLastSequenceError."""
        for key, _ in entries:
            _check(key)
        only_new: dict[str, str] = {api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: "0"}
        acks = await self._acks.publish_all(
            [(f"{self._subject_prefix}{key}", value, only_new) for key, value in entries]
        )
        return [_written(ack) for ack in acks]

    async def _write(self, key: str, value: bytes, headers: dict[str, str]) -> int:
        return _seq(await self._acks.publish(f"{self._subject_prefix}{key}", value, headers))


def _written(ack: bytes | Exception) -> int | Exception:
    """A write's revision, or its error as nats-py's KeyValue raises it."""
    if isinstance(ack, APIError):
        return _as_kv_error(ack)
    if isinstance(ack, Exception):
        return ack
    return _seq(ack)


def _seq(ack: bytes) -> int:
    """The revision a write made: its PubAck's sequence (read off the JSON, {"stream":...,"seq":N,...}, without
    parsing the rest: the router reads one for every message it dispatches)."""
    found = _SEQ.search(ack)
    if found is None:
        raise ValueError(f"not a PubAck: {ack[:200]!r}")
    return int(found[1])


def _as_kv_error(error: APIError) -> APIError:
    """A write's error as nats-py's KeyValue raises it: a stale expected revision is KeyWrongLastSequenceError."""
    if error.err_code in _WRONG_LAST_SEQUENCE:
        return KeyWrongLastSequenceError(description=error.description)
    return error


def _check(key: str) -> None:
    """As nats-py checks a key: its characters, and no dot at either end."""
    if not VALID_KEY_RE.match(key) or key.startswith(".") or key.endswith("."):
        raise InvalidKeyError(key)
