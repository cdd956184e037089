"""herald's JetStream streams: what each holds and for how long; every binary creates or updates them at
start-up (Bus.ensure_streams)."""

from dataclasses import dataclass

from herald.libs import subjects

DAY = 24 * 3600.0


@dataclass(frozen=True)
class Stream:
    subjects: list[str]
    max_age: float
    # Holds schedule definitions (Nats-Schedule headers) that the server fires at their time.
    schedules: bool = False


# docs/architecture.md explains each.
STREAMS: dict[str, Stream] = {
    subjects.MESSAGES_STREAM: Stream(["herald.message.>"], 7 * DAY),
    subjects.DELIVERIES_STREAM: Stream(["herald.delivery.>"], 7 * DAY),
    subjects.EVENTS_STREAM: Stream(["herald.event.>"], 7 * DAY),
    subjects.DEAD_LETTERS_STREAM: Stream(["herald.dead.>", "herald.unprocessed.>"], 30 * DAY),
    # A definition waits here until its time, so the stream keeps messages longer than anything may be scheduled
    # ahead; what a definition fires carries its own TTL (SCHEDULE_FIRED_TTL).
    subjects.SCHEDULES_STREAM: Stream(["herald.schedule.>"], 400 * DAY, schedules=True),
}


# How long a stream remembers a Nats-Msg-Id, dropping a repeat of its publish (after a crash and a redelivery).
DUPLICATE_WINDOW = 600.0
