"""`make bench`, a campaign's status: how long GetMessage takes for a settled message of a million deliveries, beside
one of a single delivery.

Only the bundled nats-server and one herald-feedback process run (HERALD_DATABASE_URL selects PostgreSQL; unset,
the embedded SQLite). Both messages are published as intake publishes them, then their deliveries' SENT events as the
adapters publish them (a hundred a publish); the real feedback folds them, and once its consumers are drained each
message is asked for RUNS times over gRPC with an operator's credential. The answer must count every delivery.
"""

import argparse
import asyncio
import secrets
import statistics
import time

import grpc
import nats
import psycopg
from herald.v1 import admin_service_pb2, common_pb2, events_pb2, status_service_pb2, status_service_pb2_grpc

from bench.alone import alone, backend, drained, libpq_url
from bench.mesh import ADMIN
from herald.internal.v1 import work_pb2
from herald.libs import events, subjects
from herald.libs.bus.grouping import MAX_GROUP_RECORDS
from herald.libs.timeutil import now, to_timestamp

RECIPIENTS = 1_000_000
RUNS = 21
# As herald groups them (herald/libs/bus/grouping.py: MAX_GROUP_RECORDS).
GROUP = MAX_GROUP_RECORDS
SENT = common_pb2.DELIVERY_STATE_SENT


async def _publish(nats_url: str, sizes: dict[str, int]) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        template = admin_service_pb2.Template(template_id="bench", version=1, category=common_pb2.CATEGORY_MARKETING)
        messages = [work_pb2.AcceptedMessage(message_id=m, app_id="bench", template=template) for m in sizes]
        batch = work_pb2.AcceptedBatch(messages=messages)
        await js.publish(subjects.message_accepted(common_pb2.CATEGORY_MARKETING), batch.SerializeToString())
        for message_id, size in sizes.items():
            for first in range(0, size, GROUP):
                group = events_pb2.DeliveryEvents(
                    events=[
                        events_pb2.DeliveryEvent(
                            event_id=f"{message_id}.{n}.sent.1",
                            delivery_id=f"{message_id}.{n}",
                            message_id=message_id,
                            app_id="bench",
                            template_id="bench",
                            user_id=f"user-{n}",
                            channel="webhook",
                            state=SENT,
                            attempt=1,
                            provider="webhook",
                            occur_time=to_timestamp(now()),
                        )
                        for n in range(first, min(first + GROUP, size))
                    ]
                )
                await js.publish(subjects.delivery_event(events.state_name(SENT)), group.SerializeToString())
    finally:
        await nc.close()


async def _timed(addr: str, message_id: str, size: int) -> list[float]:
    metadata = (("authorization", f"Bearer {ADMIN}"),)
    timings = []
    async with grpc.aio.insecure_channel(addr) as channel:
        status = status_service_pb2_grpc.StatusServiceStub(channel)
        for _ in range(RUNS):
            began = time.perf_counter()
            message = await status.GetMessage(
                status_service_pb2.GetMessageRequest(message_id=message_id), metadata=metadata
            )
            timings.append(time.perf_counter() - began)
            assert message.delivery_count == size, (message.delivery_count, size)
    return timings


async def run(recipients: int) -> tuple[float, float, float]:
    """Seconds feedback took to fold the campaign, and the median GetMessage milliseconds of it and of one."""
    run_id = secrets.token_hex(4)
    campaign, single = f"msg_campaign{run_id}", f"msg_single{run_id}"
    async with alone("feedback") as stage:
        began = time.perf_counter()
        await _publish(stage.nats_url, {campaign: recipients, single: 1})
        await drained(stage.nats_url, [("HERALD_MESSAGES", "feedback-messages"), ("HERALD_EVENTS", "feedback-events")])
        folded = time.perf_counter() - began
        database_url = stage.binary.env.get("HERALD_DATABASE_URL", "")
        _analyze(database_url)
        try:
            large = await _timed(stage.binary.addr, campaign, recipients)
            small = await _timed(stage.binary.addr, single, 1)
        finally:
            _forget(database_url, run_id)
    return folded, statistics.median(large) * 1000, statistics.median(small) * 1000


def _analyze(database_url: str) -> None:
    """What autovacuum does within a minute or two of a million new rows (as bench/search.py does): the planner
    must know the table is no longer small."""
    if database_url:
        with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
            for table in ("feedback_deliveries", "feedback_events", "feedback_message_states"):
                conn.execute(f"ANALYZE {table}")


def _forget(database_url: str, run_id: str) -> None:
    """PostgreSQL's database outlives the run (SQLite's is in a temporary directory): its rows go."""
    if not database_url:
        return
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        for table, column in (
            ("feedback_events", "delivery_id"),
            ("feedback_deliveries", "message_id"),
            ("feedback_message_states", "message_id"),
            ("feedback_messages", "message_id"),
        ):
            conn.execute(f"DELETE FROM {table} WHERE {column} LIKE %s", (f"msg_%{run_id}%",))  # noqa: S608


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=RECIPIENTS)
    args = parser.parse_args()
    folded, large, small = asyncio.run(run(args.recipients))
    print(
        f"GetMessage ({backend()}): a settled message of {args.recipients:,} deliveries {large:.1f} ms, one of a "
        f"single delivery {small:.1f} ms (medians of {RUNS}; feedback folded the campaign in {folded:.0f} s)"
    )


if __name__ == "__main__":
    main()
