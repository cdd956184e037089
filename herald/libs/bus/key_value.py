"""KV buckets whose writes go through the bus's PubAcks, and whose creates made together are one atomic batch.

A KV write is a JetStream publish to the bucket's stream; nats-py's own costs a process what PubAcks saves on every
publish (pubacks.py), and the router writes one per message it dispatches (the dispatch ledger), the adapters one
per paced call (the rate limiter). Reads, watches and the errors are nats-py's.

The creates asked for in one turn of the event loop (a fetched batch's dispatch decisions) go out as one JetStream
atomic batch (nats-server 2.12+, `allow_atomic` on the bucket's stream), each still expecting its key to be absent:
one PubAck for them all instead of one each - a sixth of the router's CPU per message was its decisions' creates
(docs/benchmarks.md). The stream checks every expectation when the batch commits and refuses the batch whole if one
fails (a cancel that decided first, a redelivered message's decision); then each is created alone, as before, and
answers for itself. A key asked for twice in one turn is created alone the second time: in one batch both would be
checked against the stream as it was before the batch, and both pass.
"""

import asyncio
import json
import uuid
from typing import Any

from nats.js import JetStreamContext, api
from nats.js.client import KV_PRE_TEMPLATE
from nats.js.errors import APIError, InvalidKeyError, KeyWrongLastSequenceError
from nats.js.kv import VALID_KEY_RE, KeyValue

from herald.libs.bus.pubacks import PubAcks
from herald.libs.together import together

# JSStreamWrongLastSequenceErrF and JSStreamWrongLastSequenceConstantErr, as nats-py's KeyValue reads them.
_WRONG_LAST_SEQUENCE = (10071, 10164)
# The most messages nats-server takes in one atomic batch.
MAX_BATCH = 1000
BATCH_ID, BATCH_SEQUENCE, BATCH_COMMIT = "Nats-Batch-Id", "Nats-Batch-Sequence", "Nats-Batch-Commit"
# The creates asked for this turn: key -> (value, the future its caller awaits).
_Creates = dict[str, tuple[bytes, "asyncio.Future[int]"]]


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
        self._atomic = bool(stream.config.allow_atomic)
        self._creates: _Creates | None = None
        self._committing: set[asyncio.Task[None]] = set()

    async def create(self, key: str, value: bytes, validate_keys: bool = True, msg_ttl: float | None = None) -> int:
        """Create `key` if it is absent (else KeyWrongLastSequenceError), together with the other creates of this
        turn (see the module's docstring)."""
        if msg_ttl is not None or not self._atomic:
            return await super().create(key, value, validate_keys, msg_ttl)
        if validate_keys:
            _check(key)
        loop = asyncio.get_running_loop()
        if self._creates is None:
            self._creates = {}
            loop.call_soon(self._commit_creates)
        if key in self._creates:
            return await super().create(key, value, False)
        created: asyncio.Future[int] = loop.create_future()
        self._creates[key] = (value, created)
        return await created

    def _commit_creates(self) -> None:
        creates, self._creates = self._creates or {}, None
        task = asyncio.create_task(self._commit(creates))
        self._committing.add(task)
        task.add_done_callback(self._committing.discard)

    async def _commit(self, creates: _Creates) -> None:
        items = list(creates.items())
        await together(self._commit_batch(dict(items[i : i + MAX_BATCH])) for i in range(0, len(items), MAX_BATCH))

    async def _commit_batch(self, creates: _Creates) -> None:
        if len(creates) == 1:
            await self._each_alone(creates)
            return
        batch_id = uuid.uuid4().hex  # the stream tells batches apart by id alone, whichever process sent them
        messages = [
            (
                f"{self._subject_prefix}{key}",
                value,
                {BATCH_ID: batch_id, BATCH_SEQUENCE: str(n), api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: "0"},
            )
            for n, (key, (value, _)) in enumerate(creates.items(), start=1)
        ]
        messages[-1][2][BATCH_COMMIT] = "1"
        try:
            ack: dict[str, Any] = json.loads(await self._acks.publish_batch(messages))
        except APIError:  # a key was taken, or the stream took no batch now: each answers for itself
            await self._each_alone(creates)
            return
        except Exception as e:  # what failed the batch (the bus away, most likely) fails each create in it
            for _, created in creates.values():
                if not created.done():
                    created.set_exception(e)
            return
        last, count = int(ack["seq"]), len(creates)  # the batch's messages are the stream's last `count`
        for n, (_, created) in enumerate(creates.values(), start=1):
            if not created.done():
                created.set_result(last - count + n)

    async def _each_alone(self, creates: _Creates) -> None:
        async def alone(key: str, value: bytes, created: asyncio.Future[int]) -> None:
            try:
                revision = await super(AckedKeyValue, self).create(key, value, False)
            except Exception as e:
                if not created.done():
                    created.set_exception(e)
            else:
                if not created.done():
                    created.set_result(revision)

        await together(alone(key, value, created) for key, (value, created) in creates.items())

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
