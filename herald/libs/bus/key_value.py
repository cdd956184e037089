"""KV buckets whose writes go through the bus's PubAcks.

A KV write is a JetStream publish to the bucket's stream; nats-py's own costs a process what PubAcks saves on every
publish (pubacks.py), and the router writes one per message it dispatches (the dispatch ledger), the adapters one
per paced call (the rate limiter). Reads, watches and the errors are nats-py's.
"""

import json
from typing import Any

from nats.js import JetStreamContext, api
from nats.js.client import KV_PRE_TEMPLATE
from nats.js.errors import APIError, InvalidKeyError, KeyWrongLastSequenceError
from nats.js.kv import VALID_KEY_RE, KeyValue

from herald.libs.bus.pubacks import PubAcks

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
            if e.err_code in _WRONG_LAST_SEQUENCE:
                raise KeyWrongLastSequenceError(description=e.description) from e
            raise

    async def _write(self, key: str, value: bytes, headers: dict[str, str]) -> int:
        ack: dict[str, Any] = json.loads(await self._acks.publish(f"{self._subject_prefix}{key}", value, headers))
        return int(ack["seq"])


def _check(key: str) -> None:
    """As nats-py checks a key: its characters, and no dot at either end."""
    if not VALID_KEY_RE.match(key) or key.startswith(".") or key.endswith("."):
        raise InvalidKeyError(key)
