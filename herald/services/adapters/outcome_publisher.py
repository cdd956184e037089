"""What follows a delivery's outcome on the bus: its status event, its dead letter, the dead-address notice for
the directory and the fallback job. Each has a message id of its own, so publishing an outcome again (a job
redelivered after its outcome was recorded) is idempotent."""

from collections.abc import Awaitable

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


def publish(bus: Publisher, attempt: Attempt, price: Price) -> list[Awaitable[None]]:
    """Publish what the attempt's outcome calls for (nothing when it only waits); `price` is a send's cost. The
    status event joins its group at once, as the batch's others do, so a batch's outcomes are awaited together
    without a task each; the rarer publishes that follow (dead letter, dead address, fallback) go after it, in
    order, in a task of their own."""
    job, result = attempt.job, attempt.result
    if not result.new and result.state not in FINAL:
        return []
    with attempt.active():
        event = events.event(
            job,
            result.state,
            attempt=result.attempts,
            reason=result.reason,
            provider=result.provider,
            provider_message_id=result.provider_message_id,
            cost_micros=price.micros,
            currency_code=price.currency_code,
        )
        published = events.publish(bus, event)
    if follow_ups := _follow_ups(job, result):
        return [_after(published, bus, attempt, follow_ups)]
    return [published]


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
