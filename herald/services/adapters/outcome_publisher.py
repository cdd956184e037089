"""What follows a delivery's outcome on the bus: its status event, its dead letter, the dead-address notice for
the directory and the fallback job. Each has a message id of its own, so publishing an outcome again (a job
redelivered after its outcome was recorded) is idempotent."""

import itertools
from collections.abc import Awaitable, Callable, Sequence

from herald.v1 import events_pb2

from herald.internal.v1 import work_pb2
from herald.libs import events, subjects
from herald.libs.bus.interfaces import Publisher
from herald.libs.timeutil import now, to_timestamp
from herald.services.adapters import retry_policy
from herald.services.adapters.accounts import Price
from herald.services.adapters.attempt import FINAL, Attempt, Result

# A publish that follows an outcome: subject, payload, message id.
FollowUp = tuple[str, bytes, str]


def publish(bus: Publisher, attempts: Sequence[Attempt], price: Callable[[Result], Price]) -> list[Awaitable[None]]:
    """Publish what a batch's outcomes call for (nothing for a job that only waits); `price` gives a send's cost.
    The status events of a trace's run of jobs (a SendBatch's are one) join their groups in one call, at once, so a
    batch's outcomes are awaited together without a task each; the rarer publishes that follow one (dead letter,
    dead address, fallback) go after its event, in order, in a task of their own."""
    settled = [a for a in attempts if a.result.new or a.result.state in FINAL]
    published: list[Awaitable[None]] = []
    for _, run in itertools.groupby(settled, key=lambda a: a.span.get_span_context().trace_id):
        alike = list(run)
        with alike[0].active():
            joined = events.publish(bus, *(_event(a.job, a.result, price(a.result)) for a in alike))
        published.append(joined)
        for a in alike:
            if follow_ups := _follow_ups(a.job, a.result):
                published.append(_after(joined, bus, a, follow_ups))
    return published


def _event(job: work_pb2.DeliveryJob, result: Result, price: Price) -> events_pb2.DeliveryEvent:
    return events.event(
        job,
        result.state,
        attempt=result.attempts,
        reason=result.reason,
        provider=result.provider,
        provider_message_id=result.provider_message_id,
        cost_micros=price.micros,
        currency_code=price.currency_code,
    )


def _follow_ups(job: work_pb2.DeliveryJob, result: Result) -> list[FollowUp]:
    found = []
    if result.dead:
        record = work_pb2.DeadLetterRecord(
            job=job,
            attempts=result.attempts,
            provider=result.provider,
            reason=result.reason,
            dead_time=to_timestamp(now()),
        )
        subject = subjects.dead_letter(job.category, job.channel)
        found.append((subject, record.SerializeToString(), f"{job.delivery_id}.dead.{job.replay}"))
    if result.address_dead and job.user_id:
        dead = _dead_address(job, result)
        found.append((subjects.ADDRESS_DEAD, dead.SerializeToString(), dead.event_id))
    if retry_policy.falls_back(job, result):
        found.append((subjects.fallback(job.category), job.SerializeToString(), f"{job.delivery_id}.fallback"))
    return found


async def _after(event: Awaitable[None], bus: Publisher, attempt: Attempt, follow_ups: list[FollowUp]) -> None:
    """The follow-ups once the status event is durable, in order, as they always went."""
    await event
    with attempt.active():
        for subject, payload, msg_id in follow_ups:
            await bus.publish(subject, payload, msg_id=msg_id)


def _dead_address(job: work_pb2.DeliveryJob, result: Result) -> events_pb2.DeadAddressEvent:
    return events_pb2.DeadAddressEvent(
        event_id=f"{job.delivery_id}.dead-address",
        user_id=job.user_id,
        channel=job.channel,
        address=job.address,
        delivery_id=job.delivery_id,
        provider=result.provider,
        reason=result.reason,
        occur_time=to_timestamp(now()),
    )
