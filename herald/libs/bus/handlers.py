"""What a consumer's handler answers for each message (see the package's docstring): ACK, a delay, or Broken; and
`each`, for handlers that work message by message."""

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Final

import structlog
from opentelemetry import trace

from herald.libs.errors import TRANSIENT

log = structlog.get_logger()


# After an outage (TRANSIENT), a message is tried again this soon, for as long as the outage lasts.
OUTAGE_RETRY_DELAY = 2.0


# What a dead-lettered message's reason may hold of the error.
MAX_REASON_CHARS = 1000


class RetryLater(Exception):
    """Raised by a handler: leave the message in the stream and deliver it again after `delay` seconds."""

    def __init__(self, delay: float, reason: str = "") -> None:
        super().__init__(reason)
        self.delay = delay


@dataclass(frozen=True)
class Incoming:
    subject: str
    data: bytes
    headers: dict[str, str]
    # 1 on the first delivery, 2 on the first redelivery, ...
    delivery_count: int
    # This message's consumer span, a child of the publisher's: work done for this message
    # runs under `active()`, so what it publishes or calls continues the message's trace.
    span: trace.Span
    # Its sequence in its stream: the same on every redelivery, unique within the stream.
    sequence: int

    def active(self) -> AbstractContextManager[trace.Span]:
        return trace.use_span(self.span, end_on_exit=False)


@dataclass(frozen=True)
class Broken:
    """A handler's outcome for a message it failed on for a reason other than an outage (see the package's
    docstring): retried after growing delays, then dead-lettered."""

    reason: str

    @classmethod
    def of(cls, error: BaseException) -> "Broken":
        return cls(f"{type(error).__name__}: {error}"[:MAX_REASON_CHARS])


def failed(error: Exception, messages: list[Incoming], **where: object) -> "Outcome":
    """What the messages a handler raised `error` on get, the error logged and on each message's span: an outage is
    retried shortly, anything else is Broken. Called in the `except` block."""
    log.exception("handler failed; will retry", size=len(messages), **where)
    for incoming in messages:
        incoming.span.record_exception(error)
    return OUTAGE_RETRY_DELAY if isinstance(error, TRANSIENT) else Broken.of(error)


# None acks the message; a number naks it, to be redelivered after that many seconds; Broken, see above.
Outcome = float | Broken | None


ACK: Final = None


BatchHandler = Callable[[list[Incoming]], Awaitable[list[Outcome]]]


Handler = Callable[[Incoming], Awaitable[None]]


def each(handler: Handler) -> BatchHandler:
    """Run a per-message handler on every message of a batch concurrently."""

    async def one(incoming: Incoming) -> Outcome:
        with incoming.active():
            try:
                await handler(incoming)
            except RetryLater as later:
                return later.delay
            except Exception as e:
                return failed(e, [incoming], subject=incoming.subject)
        return ACK

    async def run(batch: list[Incoming]) -> list[Outcome]:
        return list(await asyncio.gather(*(one(i) for i in batch)))

    return run
