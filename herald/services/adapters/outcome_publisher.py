"""What follows a delivery's outcome on the bus: its status event, its dead letter, the dead-address notice for
the directory and the fallback job. Each has a message id of its own, so publishing an outcome again (a job
redelivered after its outcome was recorded) is idempotent."""

from herald.v1 import events_pb2

from herald.internal.v1 import work_pb2
from herald.libs import events, subjects
from herald.libs.bus.interfaces import Publisher
from herald.libs.timeutil import now, to_timestamp
from herald.services.adapters import retry_policy
from herald.services.adapters.accounts import Price
from herald.services.adapters.attempt import FINAL, Attempt, Result


async def publish(bus: Publisher, attempt: Attempt, price: Price) -> None:
    """Publish what the attempt's outcome calls for (nothing when it only waits); `price` is a send's cost."""
    job, result = attempt.job, attempt.result
    if not result.new and result.state not in FINAL:
        return
    with attempt.active():
        await events.publish(
            bus,
            events.event(
                job,
                result.state,
                attempt=result.attempts,
                reason=result.reason,
                provider=result.provider,
                provider_message_id=result.provider_message_id,
                cost_micros=price.micros,
                currency_code=price.currency_code,
            ),
        )
        if result.dead:
            record = work_pb2.DeadLetterRecord(
                job=job,
                attempts=result.attempts,
                provider=result.provider,
                reason=result.reason,
                dead_time=to_timestamp(now()),
            )
            subject = subjects.dead_letter(job.category, job.channel)
            await bus.publish(subject, record.SerializeToString(), msg_id=f"{job.delivery_id}.dead.{job.replay}")
        if result.address_dead and job.user_id:
            await bus.publish(
                subjects.ADDRESS_DEAD,
                _dead_address(job, result).SerializeToString(),
                msg_id=f"{job.delivery_id}.dead-address",
            )
        if retry_policy.falls_back(job, result):
            subject = subjects.fallback(job.category)
            await bus.publish(subject, job.SerializeToString(), msg_id=f"{job.delivery_id}.fallback")


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
