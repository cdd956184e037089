"""herald's bus: streams, publishing with trace context, durable pull consumers, schedules, KV buckets, notices.

A consumer hands each fetched batch to its handler, which answers one Outcome
per message: ACK, or a delay after which JetStream redelivers it (a nak with
delay: JetStream itself holds the message until it is due). Handlers that work
message by message are wrapped with `each`: returning acks, raising `RetryLater`
naks with its delay.

A handler that fails is retried without end while the failure is an outage
(libs.errors.TRANSIENT: the database or the broker down or slow), after a short
pause each time, so an outage never loses a message. Any other failure says the
message itself cannot be handled (a value a database refuses, a payload over
the broker's limit, a bug): it is `Broken`, retried after growing delays
(HERALD_STAGE_RETRY_BACKOFF), then dead-lettered - published whole, with its
subject, consumer and the error, on herald.unprocessed.<consumer> in
HERALD_DEAD_LETTERS - and acked, so one bad message never holds a stage for
ever and is never dropped silently.

Many small records (accepted messages, delivery jobs and events) travel grouped: the
ones published on the same subject and in the same trace, in the same turn of
the event loop or while the previous such group awaits its PubAck (or, for a
publisher that asks, within a short linger), go out as one message whose field
1 repeats them (`publish_grouped`), so a batch of work costs one publish, not
one per record. Records that carry their own trace
context (accepted messages) are grouped across traces too: concurrent Sends
share a publish.

Consumers have a rank (0 first). While a consumer has a batch in hand, work of
lower rank in the same process waits before its next publish and its next
batch (Precedence): the priority pipelines' critical messages never queue in
the event loop behind a marketing flood.

The services depend on the small interfaces in `interfaces` (Publisher,
Consumers, Schedules, KeyValues, Notices, Streams; MessageBus is all of them).
`core.BusCore` is everything above the broker, `nats_bus.Bus` runs it over NATS
JetStream, and the tests' MemoryBus (tests/helpers/memory_bus.py) over streams
in memory. One module per job: `streams` (definitions), `handlers` (what a
handler answers), `consuming` (settling outcomes, retries, dead letters),
`grouping` (grouped records' wire encoding), `precedence` (ranks), `schedules`,
`pubacks` (waiting for PubAcks), `tracing` (spans).
"""

from herald.libs.bus.consuming import Consumer, Delivered, Source
from herald.libs.bus.core import BusCore
from herald.libs.bus.handlers import (
    ACK,
    OUTAGE_RETRY_DELAY,
    BatchHandler,
    Broken,
    Handler,
    Incoming,
    Outcome,
    RetryLater,
    each,
)
from herald.libs.bus.interfaces import Bucket, Consumers, KeyValues, MessageBus, Notices, Publisher, Schedules, Streams
from herald.libs.bus.nats_bus import MIN_SERVER_VERSION, Bus
from herald.libs.bus.schedules import ScheduleChanged, Scheduled
from herald.libs.bus.streams import DAY, STREAMS, Stream
from herald.libs.bus.tracing import current, in_own_trace, in_span, record_span

__all__ = [
    "ACK",
    "DAY",
    "MIN_SERVER_VERSION",
    "OUTAGE_RETRY_DELAY",
    "STREAMS",
    "BatchHandler",
    "Broken",
    "Bucket",
    "Bus",
    "BusCore",
    "Consumer",
    "Consumers",
    "Delivered",
    "Handler",
    "Incoming",
    "KeyValues",
    "MessageBus",
    "Notices",
    "Outcome",
    "Publisher",
    "RetryLater",
    "ScheduleChanged",
    "Scheduled",
    "Schedules",
    "Source",
    "Stream",
    "Streams",
    "current",
    "each",
    "in_own_trace",
    "in_span",
    "record_span",
]
