"""GetStats: what the business and finance teams read - counts by state, suppressions by reason, rates, latency
percentiles and cost - from aggregates the events consumer keeps current, unmoved by repeated or late events."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from herald.v1 import common_pb2, events_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import status_service_pb2 as pb

from devmesh.mesh import Mesh
from herald.libs.timeutil import now, to_timestamp
from tests.helpers.client import Herald, Metadata, all_final, bad_fields, rpc_error
from tests.helpers.status_events import publish, status_event
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2
# Far from the time the other tests run, so only this test's events fall in range.
T0 = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
HOURS = (T0, T0 + timedelta(hours=1))


class Events:
    """Status events as the router and adapters publish them, at chosen times."""

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.prefix = uuid.uuid4().hex[:12]
        self.published: list[events_pb2.DeliveryEvent] = []

    def add(
        self,
        delivery: str,
        state: common_pb2.DeliveryState.ValueType,
        at: datetime,
        *,
        channel: str = "sms",
        provider: str = "",
        attempt: int = 1,
        reason_code: str = "",
        cost: tuple[int, str] = (0, ""),
    ) -> events_pb2.DeliveryEvent:
        event = status_event(
            f"{self.prefix}.{delivery}",
            state,
            at,
            attempt=attempt,
            message_id=f"msg_{self.prefix}{delivery}",
            app_id=self.app_id,
            template_id="welcome",
            user_id=f"user-{delivery}",
            channel=channel,
            provider=provider,
            reason_code=reason_code,
            cost_micros=cost[0],
            currency_code=cost[1],
        )
        self.published.append(event)
        return event

    def sms(self, delivery: str, queued: datetime, *, sent_after: float, provider: str, cost: tuple[int, str]) -> None:
        self.add(delivery, S.DELIVERY_STATE_PENDING, queued, attempt=0)
        self.add(delivery, S.DELIVERY_STATE_SENT, queued + timedelta(seconds=sent_after), provider=provider, cost=cost)


async def _stats(herald: Herald, who: Metadata, **fields: object) -> list[pb.StatsRow]:
    request = pb.GetStatsRequest(start_time=to_timestamp(HOURS[0]), end_time=to_timestamp(T0 + timedelta(hours=2)))
    for key, value in fields.items():
        if isinstance(value, list):
            getattr(request, key).extend(value)
        else:
            setattr(request, key, value)
    return list((await herald.status.GetStats(request, metadata=who)).rows)


async def _settled(herald: Herald, who: Metadata, total_sent: int) -> list[pb.StatsRow]:
    """The statistics once every published event is folded in (the consumer works asynchronously)."""
    async with asyncio.timeout(30):
        while True:
            rows = await _stats(herald, who)
            if sum(r.sent for r in rows) >= total_sent and sum(r.suppressed for r in rows) >= 3:
                return rows
            await asyncio.sleep(0.1)


async def test_stats_count_each_state_once_with_rates_latencies_and_cost(shared_mesh: tuple[Mesh, Herald]) -> None:
    mesh, herald = shared_mesh
    app_id, app = await herald.create_app(("sms", "email"))
    usd, cny = (7900, "USD"), (45000, "CNY")
    events = Events(app_id)
    queued = T0 + timedelta(minutes=10)
    for n in range(1, 5):  # four SMS through Twilio, 0.2 s after they were queued
        events.sms(f"d{n}", queued, sent_after=0.2, provider="twilio-main", cost=usd)
    for n in (1, 2, 3):  # three reported delivered 3 s after queueing; the first two read
        events.add(f"d{n}", S.DELIVERY_STATE_DELIVERED, queued + timedelta(seconds=3), provider="twilio-main")
    for n in (1, 2):
        events.add(f"d{n}", S.DELIVERY_STATE_READ, queued + timedelta(minutes=10))
    events.add("d4", S.DELIVERY_STATE_FAILED, queued + timedelta(seconds=5), provider="twilio-main", attempt=2)
    # Repeats: the same SENT event again, and a second DELIVERED report for d2 (a new event id, the same state).
    events.published.append(events.published[1])
    events.add("d2", S.DELIVERY_STATE_DELIVERED, queued + timedelta(seconds=4), provider="twilio-main", attempt=2)
    # The next hour: one SMS through Alibaba, priced in yuan, 30 s after it was queued.
    events.sms("d5", HOURS[1] + timedelta(minutes=5), sent_after=30, provider="aliyun", cost=cny)
    for delivery, code in (("d6", "opted_out"), ("d7", "opted_out"), ("d8", "frequency_cap")):
        events.add(delivery, S.DELIVERY_STATE_SUPPRESSED, T0 + timedelta(minutes=15), channel="email", reason_code=code)
    # Another app's delivery in the same hours: never in this app's numbers.
    other_id, _ = await herald.create_app()
    others = Events(other_id)
    others.sms("x1", queued, sent_after=1, provider="webhook", cost=(0, ""))
    # d3's DELIVERED goes out before its SENT: the order events arrive in must not matter.
    d3_sent = next(e for e in events.published if e.delivery_id.endswith(".d3") and e.state == S.DELIVERY_STATE_SENT)
    events.published.remove(d3_sent)
    events.published.append(d3_sent)
    await publish(mesh, *events.published, *others.published)

    [total] = await _settled(herald, app, total_sent=5)
    assert (total.sent, total.delivered, total.read, total.failed, total.suppressed) == (5, 3, 2, 1, 3)
    assert dict(total.suppressed_by_reason) == {"opted_out": 2, "frequency_cap": 1}
    assert total.bucket_start_time.ToDatetime(UTC) == T0
    assert total.delivery_rate == 3 / 5 and total.read_rate == 2 / 3
    assert {(c.currency_code, c.amount_micros) for c in total.costs} == {("USD", 4 * 7900), ("CNY", 45000)}
    send, delivered = total.send_latency, total.delivery_latency
    assert send.count == 5 and delivered.count == 3
    assert 0.1 <= send.p50.ToTimedelta().total_seconds() <= 0.25  # four of five took 0.2 s
    assert 10 <= send.p99.ToTimedelta().total_seconds() <= 30  # the slowest took 30 s
    assert 2.5 <= delivered.p50.ToTimedelta().total_seconds() <= 5

    by_provider = await _stats(herald, app, interval=pb.STATS_INTERVAL_HOUR, group_by=[pb.STATS_DIMENSION_PROVIDER])
    assert [
        (r.bucket_start_time.ToDatetime(UTC), r.provider, r.sent, r.delivered, r.suppressed) for r in by_provider
    ] == [
        (HOURS[0], "", 0, 0, 3),
        (HOURS[0], "twilio-main", 4, 3, 0),
        (HOURS[1], "aliyun", 1, 0, 0),
    ]
    by_channel = await _stats(herald, app, interval=pb.STATS_INTERVAL_DAY, group_by=[pb.STATS_DIMENSION_CHANNEL])
    assert [(r.bucket_start_time.ToDatetime(UTC), r.channel, r.sent, r.suppressed) for r in by_channel] == [
        (T0.replace(hour=0), "email", 0, 3),
        (T0.replace(hour=0), "sms", 5, 0),
    ]
    [only_email] = await _stats(herald, app, channel="email", group_by=[pb.STATS_DIMENSION_TEMPLATE])
    assert (only_email.template_id, only_email.suppressed, only_email.sent) == ("welcome", 3, 0)

    # The admin token reads every app, and may group by app; an app key reads only its own.
    async with asyncio.timeout(30):  # the other app's event is folded in on its own time
        while not {(app_id, 5), (other_id, 1)} <= {
            (r.app_id, r.sent) for r in await _stats(herald, herald.admin, group_by=[pb.STATS_DIMENSION_APP])
        }:
            await asyncio.sleep(0.1)
    [just_other] = await _stats(herald, herald.admin, app_id=other_id)
    assert just_other.sent == 1 and not just_other.costs
    error = await rpc_error(_stats(herald, app, app_id=other_id))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_stats_follow_real_sends_through_the_mesh(herald: Herald, sink: WebhookSink) -> None:
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": '{"text": "hello"}'})
    hook = sink.url(f"/stats/{uuid.uuid4().hex[:8]}")
    start = now()
    for _ in range(3):
        request = msg.SendRequest(template_id=template, recipients=[msg.Recipient(addresses={"webhook": hook})])
        await herald.wait_message(app, await herald.send(app, request), all_final)
    window = pb.GetStatsRequest(start_time=to_timestamp(start), end_time=to_timestamp(now() + timedelta(hours=1)))
    window.group_by.append(pb.STATS_DIMENSION_TEMPLATE)
    async with asyncio.timeout(10):
        while not (rows := list((await herald.status.GetStats(window, metadata=app)).rows)):
            await asyncio.sleep(0.1)
    [row] = rows
    assert (row.template_id, row.sent, row.failed, row.send_latency.count) == (template, 3, 0, 3)
    assert row.send_latency.p99.ToTimedelta() < timedelta(seconds=10)


async def test_stats_requests_are_checked_field_by_field(herald: Herald) -> None:
    _, app = await herald.create_app()
    error = await rpc_error(herald.status.GetStats(pb.GetStatsRequest(), metadata=app))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_fields(error)) == {"start_time", "end_time"}
    backwards = pb.GetStatsRequest(start_time=to_timestamp(T0), end_time=to_timestamp(T0 - timedelta(hours=1)))
    backwards.group_by.append(pb.StatsDimension.ValueType(9))
    error = await rpc_error(herald.status.GetStats(backwards, metadata=app))
    assert set(bad_fields(error)) == {"end_time", "group_by[0]"}
    error = await rpc_error(herald.status.GetStats(pb.GetStatsRequest()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (Timestamp(seconds=2**62), Timestamp(seconds=2**62 + 3600)),  # past year 9999
        (Timestamp(seconds=1, nanos=-1), Timestamp(seconds=3600)),  # nanos out of range
        (Timestamp(seconds=253402297200), Timestamp(seconds=253402300799)),  # 9999-12-31, an hour before the end
    ],
)
async def test_timestamps_no_date_can_hold_are_invalid_arguments_everywhere(
    herald: Herald, start: Timestamp, end: Timestamp
) -> None:
    """GetStats, SearchDeliveries and ExportEvents name the field, rather than failing inside as INTERNAL."""
    _, app = await herald.create_app()
    calls = [
        herald.status.GetStats(pb.GetStatsRequest(start_time=start, end_time=end), metadata=app),
        herald.status.SearchDeliveries(pb.SearchDeliveriesRequest(start_time=start, end_time=end), metadata=app),
    ]
    for call in calls:
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert "start_time" in bad_fields(error)
    export = herald.status.ExportEvents(pb.ExportEventsRequest(start_time=start, end_time=end), metadata=app)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in export:
            pass
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
