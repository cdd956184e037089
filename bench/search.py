"""`make bench`, search: how long SearchDeliveries takes, a filtered full-text search over a million deliveries.

A million feedback_deliveries rows are written straight into PostgreSQL (ten apps, 20 templates, 50,000 users,
four channels, 100 cities, a delivery a second back 11 days), then one app searches "shipped city042" on sms in
the last week, seven times; the median is what a support person waits. PostgreSQL only (HERALD_DATABASE_URL): the
embedded SQLite is for running herald on one machine, not for a million deliveries. The rows are deleted after.
"""

import argparse
import asyncio
import statistics
import time

import grpc
import psycopg
from google.protobuf import timestamp_pb2
from herald.v1 import status_service_pb2, status_service_pb2_grpc

from bench.alone import backend, libpq_url
from bench.mesh import running

ROWS = 1_000_000
CITIES = [f"city{n:03d}" for n in range(100)]
WORDS = [f"product{n:03d}" for n in range(200)]
SEARCHES = 7


async def run(rows: int) -> list[float]:
    """Seconds each search took."""
    async with running() as bench:
        url = libpq_url(bench.mesh.binaries["feedback"].env["HERALD_DATABASE_URL"])
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                """
                INSERT INTO feedback_deliveries (delivery_id, message_id, app_id, template_id, user_id, channel,
                    state, attempts, reason, provider, create_time, update_time, content)
                SELECT 'msg_search' || i || '.0', 'msg_search' || i,
                    CASE WHEN i %% 10 = 0 THEN %(app)s ELSE 'app-' || (i %% 10) END,
                    't-' || (i %% 20), 'user-' || (i %% 50000),
                    (ARRAY['webhook', 'sms', 'email', 'inbox'])[1 + (i / 10) %% 4], 3, 1, '', 'p',
                    now() - make_interval(secs => i), now(),
                    'Your order ' || i || ' of ' || (%(words)s::text[])[1 + i %% 200]
                        || ' has shipped to ' || (%(cities)s::text[])[1 + (i / 40) %% 100]
                FROM generate_series(1, %(rows)s) AS i
                """,
                {"app": bench.app_id, "words": WORDS, "cities": CITIES, "rows": rows},
            )
            conn.execute("ANALYZE feedback_deliveries")
            try:
                async with grpc.aio.insecure_channel(bench.mesh.addr("feedback")) as channel:
                    return await _searches(status_service_pb2_grpc.StatusServiceStub(channel), bench.app)
            finally:
                conn.execute("DELETE FROM feedback_deliveries WHERE message_id LIKE 'msg_search%%'")


async def _searches(status: status_service_pb2_grpc.StatusServiceStub, app: tuple[tuple[str, str], ...]) -> list[float]:
    week_ago = timestamp_pb2.Timestamp(seconds=int(time.time()) - 7 * 86400)
    request = status_service_pb2.SearchDeliveriesRequest(query="shipped city042", channel="sms", start_time=week_ago)
    timings = []
    for _ in range(SEARCHES):
        began = time.perf_counter()
        found = await status.SearchDeliveries(request, metadata=app)
        timings.append(time.perf_counter() - began)
    assert len(found.deliveries) == 50, "a full first page"
    assert found.next_page_token, "and more"
    assert all(d.channel == "sms" and d.content.endswith("shipped to city042") for d in found.deliveries)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args()
    if backend() != "PostgreSQL":
        print("search over a million deliveries: skipped, PostgreSQL only (set HERALD_DATABASE_URL)")
        return
    timings = asyncio.run(run(args.rows))
    print(
        f"SearchDeliveries over {args.rows:,} deliveries (PostgreSQL): median {statistics.median(timings) * 1000:.0f} "
        f"ms, slowest {max(timings) * 1000:.0f} ms of {len(timings)}"
    )


if __name__ == "__main__":
    main()
