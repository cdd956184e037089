"""Statistics: hourly aggregates that the events consumer keeps current, and GetStats' reading of them.

Each delivery counts once for each state it reaches (SENT, DELIVERED, READ, FAILED, SUPPRESSED, EXPIRED,
CANCELLED), in the UTC hour it reached it, in one feedback_stats row per (hour, app, channel, template, provider,
reason code, currency, latency bucket). SENT and DELIVERED also fall into a latency bucket - the time since the
delivery was first queued for its channel - so percentiles come from a histogram, like Prometheus', and a query
never reads raw deliveries. A SENT event carries what it cost (from the account's unit price); costs add up per
currency. Hour rows are merged into the asked interval when read.
"""

from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from herald.v1 import common_pb2, events_pb2
from herald.v1 import status_service_pb2 as pb
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from herald.libs import categories, events, metrics
from herald.libs.store import Database
from herald.libs.timeutil import to_timestamp
from herald.services.feedback import tables

S = common_pb2
COUNTED = frozenset(
    {
        S.DELIVERY_STATE_SENT,
        S.DELIVERY_STATE_DELIVERED,
        S.DELIVERY_STATE_READ,
        S.DELIVERY_STATE_FAILED,
        S.DELIVERY_STATE_SUPPRESSED,
        S.DELIVERY_STATE_EXPIRED,
        S.DELIVERY_STATE_CANCELLED,
        S.DELIVERY_STATE_OPENED,
        S.DELIVERY_STATE_CLICKED,
        S.DELIVERY_STATE_DIGESTED,
    }
)
TIMED = frozenset({S.DELIVERY_STATE_SENT, S.DELIVERY_STATE_DELIVERED})
# Upper bounds, in seconds, of the latency buckets; bucket len(LATENCY_BOUNDS) holds everything longer.
LATENCY_BOUNDS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400,
)  # fmt: skip
NOT_TIMED = -1
# The same latency for Prometheus, by channel and category: what the critical-latency alert watches.
DELIVERY_LATENCY = metrics.BatchHistogram(
    "herald_feedback_delivery_latency_seconds",
    "From a delivery being queued for its channel (after any schedule or quiet hours) to SENT or DELIVERED, "
    "by channel, category and state.",
    ["channel", "category", "state"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600),
)
PERCENTILES = (0.5, 0.9, 0.99)
HOUR = timedelta(hours=1)

T = tables.Stat
KEY = (
    T.bucket_start,
    T.app_id,
    T.channel,
    T.template_id,
    T.provider,
    T.state,
    T.reason_code,
    T.currency_code,
    T.latency_bucket,
)
DIMENSIONS: dict[int, InstrumentedAttribute[str]] = {
    pb.STATS_DIMENSION_APP: T.app_id,
    pb.STATS_DIMENSION_CHANNEL: T.channel,
    pb.STATS_DIMENSION_TEMPLATE: T.template_id,
    pb.STATS_DIMENSION_PROVIDER: T.provider,
}


def hour_of(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def latency_bucket(seconds: float) -> int:
    return bisect_left(LATENCY_BOUNDS, max(seconds, 0.0))


class Key(NamedTuple):
    """A feedback_stats row's key. A tuple: made, hashed and compared for every delivery counted."""

    bucket_start: datetime
    app_id: str
    channel: str
    template_id: str
    provider: str
    state: int
    reason_code: str
    currency_code: str
    latency_bucket: int


@dataclass
class Tally:
    """One batch's additions to feedback_stats, and its latencies for DELIVERY_LATENCY once they are committed."""

    deliveries: Counter[Key] = field(default_factory=Counter)
    cost_micros: Counter[Key] = field(default_factory=Counter)
    # Seconds to SENT or DELIVERED, by channel, category and state.
    latencies: defaultdict[tuple[str, int, int], list[float]] = field(default_factory=lambda: defaultdict(list))

    def count(self, delivery: dict[str, Any], event: events_pb2.DeliveryEvent, occurred: datetime) -> None:
        """Counts the state the event reports, unless the delivery was counted for it before."""
        bit = 1 << event.state
        if event.state not in COUNTED or delivery["counted"] & bit:
            return
        delivery["counted"] |= bit
        queued = delivery["queued_time"]
        timed = event.state in TIMED and queued is not None
        seconds = (occurred - queued).total_seconds() if timed else 0.0
        if timed:
            self.latencies[(delivery["channel"], event.category, event.state)].append(max(seconds, 0.0))
        key = Key(
            hour_of(occurred),
            delivery["app_id"],
            delivery["channel"],
            delivery["template_id"],
            event.provider or delivery["provider"],
            event.state,
            event.reason_code,
            event.currency_code,
            latency_bucket(seconds) if timed else NOT_TIMED,
        )
        self.deliveries[key] += 1
        self.cost_micros[key] += event.cost_micros

    async def save(self, session: AsyncSession, db: Database) -> None:
        """Adds to the rows in key order, so two replicas' batches cannot deadlock on them."""
        rows = [
            {**key._asdict(), "deliveries": n, "cost_micros": self.cost_micros[key]}
            for key, n in sorted(self.deliveries.items())
        ]
        table = tables.Base.metadata.tables[T.__tablename__]
        await db.insert_rows(session, table, rows, key=[c.key for c in KEY], add=["deliveries", "cost_micros"])

    def observe(self) -> None:
        for (channel, category, state), seconds in self.latencies.items():
            DELIVERY_LATENCY.observe((channel, categories.name(category), events.state_name(state)), seconds)


@dataclass(frozen=True)
class Query:
    start: datetime
    end: datetime
    interval: int
    group_by: tuple[int, ...]
    app_id: str | None
    channel: str = ""
    template_id: str = ""


@dataclass
class _Row:
    states: Counter[int] = field(default_factory=Counter)
    suppressed_by_reason: Counter[str] = field(default_factory=Counter)
    latency: dict[int, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    costs: Counter[str] = field(default_factory=Counter)


async def report(session: AsyncSession, query: Query) -> list[pb.StatsRow]:
    dimensions = [DIMENSIONS[d] for d in dict.fromkeys(query.group_by)]
    columns = [T.bucket_start, *dimensions, T.state, T.reason_code, T.currency_code, T.latency_bucket]
    statement = (
        select(*columns, func.sum(T.deliveries), func.sum(T.cost_micros))
        .where(T.bucket_start >= hour_of(query.start), T.bucket_start < query.end)
        .group_by(*columns)
    )
    for column, value in ((T.app_id, query.app_id), (T.channel, query.channel), (T.template_id, query.template_id)):
        if value:
            statement = statement.where(column == value)
    merged: dict[tuple[datetime, tuple[str, ...]], _Row] = defaultdict(_Row)
    for found in await session.execute(statement):
        values: list[Any] = list(found)
        hour, groups = values[0], values[1 : 1 + len(dimensions)]
        state, reason_code, currency_code, bucket, deliveries, cost = values[1 + len(dimensions) :]
        row = merged[(_bucket(hour, query), tuple(groups))]
        deliveries, cost = int(deliveries), int(cost)  # PostgreSQL sums bigints as numeric
        row.states[state] += deliveries
        if state == S.DELIVERY_STATE_SUPPRESSED and reason_code:
            row.suppressed_by_reason[reason_code] += deliveries
        if bucket != NOT_TIMED:
            row.latency[state][bucket] += deliveries
        if cost:
            row.costs[currency_code] += cost
    names = [c.key for c in dimensions]
    return [_row_pb(when, dict(zip(names, groups, strict=True)), row) for (when, groups), row in sorted(merged.items())]


def _bucket(hour: datetime, query: Query) -> datetime:
    if query.interval == pb.STATS_INTERVAL_HOUR:
        return hour
    if query.interval == pb.STATS_INTERVAL_DAY:
        return hour.replace(hour=0)
    return hour_of(query.start)


def _row_pb(when: datetime, groups: dict[str, str], row: _Row) -> pb.StatsRow:
    sent = row.states[S.DELIVERY_STATE_SENT]
    delivered = row.states[S.DELIVERY_STATE_DELIVERED]
    read = row.states[S.DELIVERY_STATE_READ]
    opened, clicked = row.states[S.DELIVERY_STATE_OPENED], row.states[S.DELIVERY_STATE_CLICKED]
    stats = pb.StatsRow(
        bucket_start_time=to_timestamp(when),
        sent=sent,
        delivered=delivered,
        read=read,
        failed=row.states[S.DELIVERY_STATE_FAILED],
        suppressed=row.states[S.DELIVERY_STATE_SUPPRESSED],
        expired=row.states[S.DELIVERY_STATE_EXPIRED],
        cancelled=row.states[S.DELIVERY_STATE_CANCELLED],
        suppressed_by_reason=dict(row.suppressed_by_reason),
        delivery_rate=delivered / sent if sent else 0.0,
        read_rate=read / delivered if delivered else 0.0,
        send_latency=_percentiles(row.latency[S.DELIVERY_STATE_SENT]),
        delivery_latency=_percentiles(row.latency[S.DELIVERY_STATE_DELIVERED]),
        costs=[pb.Cost(currency_code=c, amount_micros=amount) for c, amount in sorted(row.costs.items())],
        opened=opened,
        clicked=clicked,
        open_rate=opened / sent if sent else 0.0,
        click_rate=clicked / sent if sent else 0.0,
        digested=row.states[S.DELIVERY_STATE_DIGESTED],
    )
    for dimension, value in groups.items():
        setattr(stats, dimension, value)
    return stats


def _percentiles(histogram: Counter[int]) -> pb.LatencyPercentiles:
    total = sum(histogram.values())
    result = pb.LatencyPercentiles(count=total)
    if total:
        for target, q in zip((result.p50, result.p90, result.p99), PERCENTILES, strict=True):
            target.FromTimedelta(timedelta(seconds=_quantile(histogram, total, q)))
    return result


def _quantile(histogram: Counter[int], total: int, q: float) -> float:
    """Linear within the bucket the q-th latency falls in; the open last bucket answers its lower bound."""
    rank, below = q * total, 0
    for bucket in sorted(histogram):
        count = histogram[bucket]
        if below + count >= rank:
            if bucket >= len(LATENCY_BOUNDS):
                return LATENCY_BOUNDS[-1]
            lower = LATENCY_BOUNDS[bucket - 1] if bucket > 0 else 0.0
            return lower + (LATENCY_BOUNDS[bucket] - lower) * (rank - below) / count
        below += count
    return LATENCY_BOUNDS[-1]
