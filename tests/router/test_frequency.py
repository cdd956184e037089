"""Frequency caps: exactly N go out per user per window, even with two routers and 50 sends at once.

Which deliveries a cap applies to (critical only when a rule names it) is tested in one process,
test_routing_stage.py."""

import asyncio
import secrets
import uuid
from collections import Counter

import grpc
import pytest
from google.protobuf import duration_pb2
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import routing_service_pb2 as routing

from devmesh.mesh import Mesh
from herald.libs import subjects
from tests.helpers.client import Herald, all_final
from tests.helpers.otlp_receiver import OtlpReceiver, sampled_trace
from tests.helpers.replicas import extra_replica
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2
DAY = duration_pb2.Duration(seconds=86400)
WAVE = 10


async def _rule(herald: Herald, app_id: str, category: common_pb2.Category.ValueType, most: int) -> str:
    rule = routing.FrequencyRule(category=category, channel="webhook", app_id=app_id, max_deliveries=most, window=DAY)
    created = await herald.routing.CreateFrequencyRule(
        routing.CreateFrequencyRuleRequest(rule=rule), metadata=herald.admin
    )
    return str(created.rule_id)


# It needs both routers to take part, which a machine busy with other tests' meshes may not give it: run alone.
@pytest.mark.serial
async def test_two_routers_and_fifty_sends_let_exactly_three_through(
    shared_mesh: tuple[Mesh, Herald], sink: WebhookSink
) -> None:
    mesh, herald = shared_mesh
    app_id, app = await herald.create_app()
    rule_id = await _rule(herald, app_id, S.CATEGORY_MARKETING, 3)
    template = await herald.create_template({"webhook": '{"n": "{{ n }}"}'}, S.CATEGORY_MARKETING)
    # Each message is its own sampled trace, and only the second router exports its spans: the messages it
    # routed, counted by trace, show that both routers took part in the race.
    traces = [secrets.token_hex(16) for _ in range(50)]
    replica_spans = OtlpReceiver()
    await replica_spans.start()
    tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": replica_spans.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    accepted = subjects.message_accepted(S.CATEGORY_MARKETING)
    path = f"/freq/{uuid.uuid4().hex[:8]}"
    user = msg.Recipient(user_id=f"u-{uuid.uuid4().hex[:6]}", addresses={"webhook": sink.url(path)})
    try:
        async with extra_replica(mesh, "router", tracing):
            await asyncio.sleep(6)  # both routers see the new rule (rules are cached for 5 s)
            # In waves of concurrent Sends: concurrent Sends travel to the routers in a publish or two
            # (herald/libs/bus), which one router alone may fetch; each wave is a publish of its own for whichever
            # router asks next.
            ids: list[str] = []
            for wave in range(0, len(traces), WAVE):
                ids += await asyncio.gather(
                    *(
                        herald.send(
                            app + sampled_trace(trace),
                            msg.SendRequest(template_id=template, recipients=[user], variables={"n": str(i)}),
                        )
                        for i, trace in enumerate(traces[wave : wave + WAVE], start=wave)
                    )
                )
            finals = await asyncio.gather(*(herald.wait_message(app, m, all_final, timeout=60) for m in ids))
    finally:
        await replica_spans.stop()
    routed_by_replica = {t for t, _, name in replica_spans.spans if name == f"{accepted} process"} & set(traces)
    assert 0 < len(routed_by_replica) < 50, f"both routers must route some; the second: {len(routed_by_replica)}"
    states = Counter(m.deliveries[0].state for m in finals)
    assert states == {S.DELIVERY_STATE_SENT: 3, S.DELIVERY_STATE_SUPPRESSED: 47}
    reasons = {m.deliveries[0].reason for m in finals if m.deliveries[0].state == S.DELIVERY_STATE_SUPPRESSED}
    assert reasons == {
        f"frequency cap: at most 3 marketing deliveries on webhook per day to this recipient (rule {rule_id})"
    }
    await asyncio.sleep(1)
    assert len(sink.for_path(path)) == 3


async def test_rules_are_listed_deleted_and_validated(herald: Herald) -> None:
    rule_id = await _rule(herald, "", S.CATEGORY_MARKETING, 5)
    listed = await herald.routing.ListFrequencyRules(routing.ListFrequencyRulesRequest(), metadata=herald.admin)
    assert rule_id in [r.rule_id for r in listed.rules]
    await herald.routing.DeleteFrequencyRule(routing.DeleteFrequencyRuleRequest(rule_id=rule_id), metadata=herald.admin)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await herald.routing.DeleteFrequencyRule(
            routing.DeleteFrequencyRuleRequest(rule_id=rule_id), metadata=herald.admin
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    bad = routing.FrequencyRule(category=S.CATEGORY_MARKETING, max_deliveries=0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await herald.routing.CreateFrequencyRule(routing.CreateFrequencyRuleRequest(rule=bad), metadata=herald.admin)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
