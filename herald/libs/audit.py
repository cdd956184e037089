"""The audit trail's writing side: every call of an RPC roles.py marks `audited` leaves one AuditEvent on
herald.event.audit, published by the binary that served it (herald/libs/grpc_server.py calls `AuditTrail.record`
once the handler has answered, whatever the outcome); herald-feedback keeps them (herald/services/feedback/audit.py).

A handler says what it changed with `changed(before=..., after=...)` where it holds the old state; otherwise the
record's `after` is the call's response. Secrets are redacted and personal addresses masked before anything leaves
the process: the record names what changed, never a key, a secret, a token or a whole address.
"""

import asyncio
import contextvars
import functools
import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from google.protobuf import json_format, struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from herald.v1 import events_pb2
from opentelemetry import trace

from herald.libs import subjects
from herald.libs.auth import CALLING_APP
from herald.libs.bus import Publisher
from herald.libs.callers import CURRENT_OPERATOR
from herald.libs.errors import TRANSIENT, HeraldError
from herald.libs.masking import mask
from herald.libs.roles import Rule
from herald.libs.timeutil import now, to_timestamp

log = structlog.get_logger()

REDACTED = "[redacted]"
# Fields whose values are credentials, wherever they appear: an app's key, a webhook's signing secret, an inbox
# token, a provider account's credential references.
SECRET_FIELDS = frozenset({"api_key", "secret", "token", "credentials", "password"})
# Maps of channel -> address (a recipient's, a directory user's) and single addresses (a suppression's): e-mail and
# phone masked, the rest (device tokens, webhook URLs, chat ids) redacted.
ADDRESS_FIELDS = frozenset({"addresses", "address"})
# How often records the bus could not take are offered again.
RETRY_SECONDS = 1.0
# How long the message traffic's records gather before they are published together.
FLUSH_SECONDS = 0.02
_FIELD = re.compile(r"\{([a-z_.]+)\}")


@dataclass
class Change:
    """What the current audited call changed, filled in by its handler (`changed`) and by the gRPC layer."""

    rule: Rule
    before: Message | None = None
    after: Message | None = None
    noted: bool = False
    # A client stream's first message: where its target is named.
    first: Message | None = None


CURRENT_CHANGE: ContextVar[Change | None] = ContextVar("audit_change", default=None)


def begin(rule: Rule) -> Change:
    change = Change(rule)
    CURRENT_CHANGE.set(change)
    CALLING_APP.set("")
    return change


def changed(*, before: Message | None = None, after: Message | None = None) -> None:
    """The target before and after this call, as the handler knows them (after unset: it is gone, or the
    response says nothing more). Outside an audited call this does nothing."""
    change = CURRENT_CHANGE.get()
    if change is not None:
        change.before, change.after, change.noted = before, after, True


def redacted(message: Message) -> struct_pb2.Struct:
    """The message as JSON, secrets redacted. A message JSON cannot hold (a Duration whose nanos contradict its
    seconds: a request refused for it) is recorded as that, not dropped."""
    struct = struct_pb2.Struct()
    if (data := _plain(message)) is None:
        try:
            data = json_format.MessageToDict(message, preserving_proto_field_name=True)
        except json_format.Error as e:
            data = {"unrepresentable": str(e)}
    struct.update(_redact(data))
    return struct


_PLAIN = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BOOL)


def _plain(message: Message) -> dict[str, Any] | None:
    """The message as MessageToDict gives it, when every field it has set is a single string or bool (a Send's
    answer, recorded for every Send), read directly: MessageToDict's reflection cost a Send a twentieth of intake's
    CPU. None for any other message."""
    found: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.is_repeated or field.type not in _PLAIN:
            return None
        found[field.name] = value
    return found


def _kept(response: Message, path: str) -> struct_pb2.Struct:
    """What a record keeps of an answer that is a list (Rule.keeps, "<entries>.<path to an id>"): each entry's id,
    in order, under "<id>s", and how many entries have none as "refused_entries". A SendBatch's whole answer as JSON,
    built through `redacted`, cost intake a tenth of its CPU per message (530-620 us for a batch of 100; this,
    40-50)."""
    entries, _, inner = path.partition(".")
    *within, leaf = inner.split(".")
    made = struct_pb2.Struct()
    ids = made.fields[f"{leaf}s"].list_value.values
    refused = 0
    for entry in getattr(response, entries):
        for name in within:
            entry = getattr(entry, name) if entry is not None and entry.HasField(name) else None
        if entry is None:
            refused += 1
        else:
            ids.add().string_value = getattr(entry, leaf)
    if refused:
        made["refused_entries"] = refused
    return made


def _redact(value: Any, field: str = "") -> Any:
    if field in SECRET_FIELDS:
        return {k: REDACTED for k in value} if isinstance(value, dict) else REDACTED
    if field in ADDRESS_FIELDS and isinstance(value, dict):
        return {channel: _masked_address(address) for channel, address in value.items()}
    if field in ADDRESS_FIELDS and isinstance(value, str):
        return _masked_address(value)
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, field) for v in value]
    return value


def _masked_address(address: str) -> str:
    masked = mask(address)
    return masked if masked != address else REDACTED


def target(rule: Rule, request: Message | None, response: Message | None, app_id: str) -> str:
    """The rule's target pattern with each {field.path} taken from the request, else the response; an app's own
    calls name no app_id, so {app_id} is then the caller's."""

    def value(path: str) -> str:
        for source in (request, response):
            if (found := _field(source, path)) != "":
                return found
        return app_id if path == "app_id" else ""

    parts = _pattern(rule.target)
    return "".join(value(part) if i % 2 else part for i, part in enumerate(parts))


@functools.cache
def _pattern(target: str) -> list[str]:
    """A target pattern split once: its text and its {field.path}s, which are the odd items."""
    return _FIELD.split(target)


def _field(message: Message | None, path: str) -> str:
    for name in path.split("."):
        if message is None or name not in message.DESCRIPTOR.fields_by_name:
            return ""
        message = getattr(message, name)
    return str(message)


def outcome(error: BaseException | None, context: grpc.aio.ServicerContext) -> tuple[str, str]:
    """The status code name and message the caller gets for `error` (herald/libs/grpc_server.py's mapping)."""
    if error is None:
        return "OK", ""
    if isinstance(error, HeraldError):
        return error.code.name, error.message
    if isinstance(error, grpc.aio.AbortError):  # the handler aborted the call itself
        code = context.code()
        return (code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"), context.details() or ""
    if isinstance(error, TRANSIENT):
        return grpc.StatusCode.UNAVAILABLE.name, "herald could not reach its database or message bus"
    return grpc.StatusCode.INTERNAL.name, "internal error"


class AuditTrail:
    """Publishes a binary's audit records. A record the bus cannot take (NATS away) is kept and offered again
    every RETRY_SECONDS under the same id (feedback keeps one row per id), so an outage delays records but loses none
    unless the process ends before NATS is back; `close` makes a last attempt and says how many it could not
    publish."""

    def __init__(self, bus: Publisher, service: str) -> None:
        self._bus = bus
        self._service = service
        self._held: list[events_pb2.AuditEvent] = []
        self._retrying: asyncio.Task[None] | None = None
        # The message traffic's records waiting for their publish, and the task that makes it.
        self._queued: list[events_pb2.AuditEvent] = []
        self._flushing: asyncio.Task[None] | None = None

    async def record(
        self,
        method: str,
        change: Change,
        request: Message | None,
        response: Message | None,
        error: BaseException | None,
        context: grpc.aio.ServicerContext,
    ) -> None:
        operator = CURRENT_OPERATOR.get()
        app_id = CALLING_APP.get()
        if operator is None and not app_id:
            return  # nobody we know: a call without credentials, or with a key that is not one
        code, message = outcome(error, context)
        event = events_pb2.AuditEvent(
            event_id=str(uuid.uuid4()),
            occur_time=to_timestamp(now()),
            actor=operator.actor if operator else f"app:{app_id}",
            roles=sorted(operator.roles) if operator else [],
            action=method,
            target=target(change.rule, change.first or request, response, app_id),
            outcome=code,
            outcome_message=message,
            service=self._service,
            trace_id=format(trace.get_current_span().get_span_context().trace_id, "032x"),
        )
        if request is not None and not change.rule.traffic:
            event.request.CopyFrom(redacted(request))
        if error is None:
            after = change.after if change.noted else response
            if change.before is not None:
                event.before.CopyFrom(redacted(change.before))
            if after is not None and change.rule.keeps:
                event.after.CopyFrom(_kept(after, change.rule.keeps))
            elif after is not None:
                event.after.CopyFrom(redacted(after))
        if change.rule.traffic:
            self._queue(event)
        else:
            await self._publish(event)

    def _queue(self, event: events_pb2.AuditEvent) -> None:
        """The message traffic's records: the call answers at once, and what its neighbours left within
        FLUSH_SECONDS goes out in one publish (a record each would cost a Send a fifth more CPU)."""
        self._queued.append(event)
        if self._flushing is None or self._flushing.done():
            # A context of its own: the publish belongs to no one call's trace.
            self._flushing = asyncio.create_task(self._flush(), name="audit-flush", context=contextvars.Context())

    async def _flush(self) -> None:
        while self._queued:
            await asyncio.sleep(FLUSH_SECONDS)
            batch, self._queued = self._queued, []
            try:
                await self._send(*batch)
            except TRANSIENT as e:
                log.warning("audit records held until NATS takes them", records=len(batch), error=repr(e))
                self._hold(*batch)

    async def _publish(self, event: events_pb2.AuditEvent) -> None:
        try:
            await self._send(event)
        except TRANSIENT as e:
            log.warning("audit record held until NATS takes it", action=event.action, error=repr(e))
            self._hold(event)

    def _hold(self, *events: events_pb2.AuditEvent) -> None:
        self._held += events
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.create_task(self._retry(), name="audit-retry")

    async def _send(self, *events: events_pb2.AuditEvent) -> None:
        """Grouped with the records of concurrent calls (AuditEvents on herald.event.audit)."""
        records = [(event.SerializeToString(), event.event_id) for event in events]
        await self._bus.publish_grouped(subjects.AUDIT, *records, each_traced=True)

    async def _retry(self) -> None:
        while self._held:
            await asyncio.sleep(RETRY_SECONDS)
            await self._offer_held()

    async def _offer_held(self) -> None:
        """Every held record in one publish, as the traffic's are; still held if NATS is still away."""
        held, self._held = self._held, []
        if not held:
            return
        try:
            await self._send(*held)
        except TRANSIENT:
            self._held = held + self._held

    async def close(self) -> None:
        if self._flushing is not None:
            await self._flushing
        if self._retrying is not None:
            self._retrying.cancel()
        await self._offer_held()
        if self._held:
            log.error("audit records lost: NATS did not take them before shutdown", records=len(self._held))
