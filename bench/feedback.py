"""`make bench`, the feedback stage alone: how many status events per second one herald-feedback process folds
into the deliveries and their history.

Only the bundled nats-server and one herald-feedback process run. The process is paused while status events are
published as the router and adapters would - per delivery a PENDING with its rendered content, then a SENT -
then resumed, and timed until its durable consumer has nothing pending or unacked. HERALD_DATABASE_URL selects
PostgreSQL (the issue's target); unset, the embedded SQLite is used.
"""

import argparse
import asyncio
import secrets
from collections.abc import Awaitable, Callable

from herald.v1 import common_pb2, events_pb2
from nats.js import JetStreamContext

from bench.alone import alone, backend, drained, measure
from herald.libs import events, subjects
from herald.libs.timeutil import now, to_timestamp

DELIVERIES = 20_000
STATES = (common_pb2.DELIVERY_STATE_PENDING, common_pb2.DELIVERY_STATE_SENT)


def event_publisher() -> Callable[[JetStreamContext, int], Awaitable[object]]:
    """Publishes the n-th status event: delivery n // 2, PENDING then SENT."""
    run = secrets.token_hex(4)

    async def publish(js: JetStreamContext, n: int) -> object:
        delivery, state = divmod(n, 2)
        event = events_pb2.DeliveryEvent(
            event_id=f"msg_bench{run}{delivery:08d}.0.{events.state_name(STATES[state])}.{state}",
            delivery_id=f"msg_bench{run}{delivery:08d}.0",
            message_id=f"msg_bench{run}{delivery:08d}",
            app_id="bench",
            template_id="bench",
            user_id=f"user-{delivery % 5000}",
            channel="webhook",
            state=STATES[state],
            attempt=state,
            provider="webhook" if state else "",
            occur_time=to_timestamp(now()),
            content="" if state else f"Your order {delivery} has shipped",
        )
        subject = subjects.delivery_event(events.state_name(event.state))
        payload = events_pb2.DeliveryEvents(events=[event]).SerializeToString()  # one event a message: the worst case
        return await js.publish(subject, payload, headers={"Nats-Msg-Id": event.event_id})

    return publish


async def run(deliveries: int) -> tuple[float, float]:
    """Events folded per second, and the feedback process's CPU milliseconds per event."""
    async with alone("feedback") as stage:
        return await measure(
            stage,
            deliveries * len(STATES),
            event_publisher(),
            lambda: drained(stage.nats_url, [("HERALD_EVENTS", "feedback-events")]),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=DELIVERIES)
    args = parser.parse_args()
    per_second, cpu_ms = asyncio.run(run(args.deliveries))
    print(
        f"one herald-feedback process ({backend()}): {args.deliveries * len(STATES):,} status events folded at "
        f"{per_second:,.0f} events/s, {cpu_ms:.2f} ms of its CPU per event"
    )


if __name__ == "__main__":
    main()
