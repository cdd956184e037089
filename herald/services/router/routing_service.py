"""RoutingService: the frequency caps the router applies, and Explain. Every call needs the admin token."""

from datetime import timedelta

import grpc
from herald.v1 import common_pb2, routing_service_pb2_grpc
from herald.v1 import routing_service_pb2 as pb
from sqlalchemy import select

from herald.libs import audit, categories, channels
from herald.libs.callers import require_operator
from herald.libs.errors import InvalidArgument, NotFound
from herald.libs.ids import new_id
from herald.libs.store import Database
from herald.libs.timeutil import duration_field, now, to_timestamp
from herald.services.router import tables
from herald.services.router.explain import Explainer
from herald.services.router.frequency import MAX_WINDOW, FrequencyCaps


class RoutingService(routing_service_pb2_grpc.RoutingServiceServicer):
    def __init__(self, db: Database, caps: FrequencyCaps, explainer: Explainer) -> None:
        self._db = db
        self._caps = caps
        self._explainer = explainer

    async def CreateFrequencyRule(
        self, request: pb.CreateFrequencyRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.FrequencyRule:
        require_operator()
        rule = request.rule
        bad: dict[str, str] = {}
        window = duration_field(rule, "window", bad, "rule.window") or timedelta(0)
        if rule.category not in categories.KNOWN:
            bad["rule.category"] = "CRITICAL, NOTIFICATION or MARKETING"
        if rule.channel and (why := channels.problem(rule.channel)):
            bad["rule.channel"] = why
        if len(rule.app_id) > 40:
            bad["rule.app_id"] = "an app id, or empty for every app"
        if not 1 <= rule.max_deliveries <= 10_000:
            bad["rule.max_deliveries"] = "between 1 and 10000"
        if "rule.window" not in bad and not timedelta(seconds=1) <= window <= timedelta(seconds=MAX_WINDOW):
            bad["rule.window"] = "between 1 second and 30 days"
        if bad:
            raise InvalidArgument(bad)
        row = tables.FrequencyRule(
            rule_id=new_id("freq"),
            category=rule.category,
            channel=rule.channel,
            app_id=rule.app_id,
            max_deliveries=rule.max_deliveries,
            window_seconds=window.total_seconds(),
            create_time=now(),
        )
        async with self._db.session.begin() as session:
            session.add(row)
        self._caps.forget_rules()
        return _rule_pb(row)

    async def ListFrequencyRules(
        self, request: pb.ListFrequencyRulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFrequencyRulesResponse:
        require_operator()
        async with self._db.session() as session:
            rows = await session.scalars(select(tables.FrequencyRule).order_by(tables.FrequencyRule.rule_id))
            return pb.ListFrequencyRulesResponse(rules=[_rule_pb(r) for r in rows])

    async def DeleteFrequencyRule(
        self, request: pb.DeleteFrequencyRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteFrequencyRuleResponse:
        require_operator()
        async with self._db.session.begin() as session:
            row = await session.get(tables.FrequencyRule, request.rule_id)
            if row is None:
                raise NotFound(f"frequency rule '{request.rule_id[:64]}' not found")
            await session.delete(row)
        audit.changed(before=_rule_pb(row))
        self._caps.forget_rules()
        return pb.DeleteFrequencyRuleResponse(rule_id=request.rule_id)

    async def ExplainRouting(
        self, request: pb.ExplainRoutingRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExplainRoutingResponse:
        require_operator()
        return await self._explainer.explain(request)


def _rule_pb(row: tables.FrequencyRule) -> pb.FrequencyRule:
    rule = pb.FrequencyRule(
        rule_id=row.rule_id,
        category=common_pb2.Category.ValueType(row.category),
        channel=row.channel,
        app_id=row.app_id,
        max_deliveries=row.max_deliveries,
        create_time=to_timestamp(row.create_time),
    )
    rule.window.FromTimedelta(timedelta(seconds=row.window_seconds))
    return rule
