"""SREs see each provider account's calls in the adapters' /metrics: how they ended and how long they took. In one
process (tests/adapters/stage.py), read from the registry /metrics serves."""

import uuid

from herald.v1 import common_pb2
from prometheus_client import REGISTRY

from tests.adapters.stage import adapters_stage
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_provider_calls_are_counted_by_outcome_and_timed(database_url: str, sink: WebhookSink) -> None:
    calls, timed, deliveries = (
        "herald_provider_calls_total",
        "herald_provider_call_seconds_count",
        "herald_adapters_deliveries_total",
    )
    outcomes = {"sent": "sent", "permanent": "failed"}
    before = {
        **{o: _value(calls, account="webhook", outcome=o) for o in outcomes},
        **{d: _value(deliveries, channel="webhook", category="notification", outcome=d) for d in outcomes.values()},
        "timed": _value(timed, channel="webhook", account="webhook"),
    }
    path = f"/metrics/{uuid.uuid4().hex[:8]}"
    sink.answer(path, 404)  # refused for good
    async with adapters_stage(database_url) as adapters:
        [refused] = await adapters.outcome(await adapters.send("webhook", sink.url(path)))
        [accepted] = await adapters.outcome(await adapters.send("webhook", sink.url(path)))
    assert [refused.state, accepted.state] == [S.DELIVERY_STATE_FAILED, S.DELIVERY_STATE_SENT]

    for call_outcome, delivery_outcome in outcomes.items():
        assert _value(calls, account="webhook", outcome=call_outcome) >= before[call_outcome] + 1
        labels = {"channel": "webhook", "category": "notification", "outcome": delivery_outcome}
        assert _value(deliveries, **labels) >= before[delivery_outcome] + 1
    assert _value(timed, channel="webhook", account="webhook") >= before["timed"] + 2
