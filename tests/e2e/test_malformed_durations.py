"""Every Duration a request carries, malformed the ways protobuf allows on the wire: INVALID_ARGUMENT naming the
field, never INTERNAL (protobuf's own conversions raise OverflowError or SerializeToJsonError on them)."""

from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import common_pb2, inbox_service_pb2, routing_service_pb2

from tests.helpers.client import Herald, bad_fields, rpc_error

MALFORMED = {
    "nanos against the seconds' sign": Duration(seconds=5, nanos=-1),
    "nanos past a second": Duration(seconds=5, nanos=1_000_000_000),
    "seconds past 10,000 years": Duration(seconds=2**62),
    "negative seconds past 10,000 years": Duration(seconds=-(2**62)),
}


def _template(
    escalation: list[admin.EscalationStep] | None = None, digest: admin.Digest | None = None
) -> admin.CreateTemplateRequest:
    contents = [common_pb2.ChannelContent(channel=c, body="hi {{ name }}") for c in ("inbox", "sms")]
    template = admin.Template(
        template_id="malformed-duration",
        category=common_pb2.CATEGORY_NOTIFICATION,
        contents=contents,
        escalation=escalation,
        digest=digest,
    )
    return admin.CreateTemplateRequest(template=template)


Call = Callable[[Herald, Duration], Awaitable[object]]


async def _escalation(herald: Herald, length: Duration) -> object:
    step = admin.EscalationStep(channel="sms", delay=length)
    return await herald.admin_stub.CreateTemplate(_template(escalation=[step]), metadata=herald.admin)


async def _digest(herald: Herald, length: Duration) -> object:
    digest = admin.Digest(window=length)
    return await herald.admin_stub.CreateTemplate(_template(digest=digest), metadata=herald.admin)


async def _grace(herald: Herald, length: Duration) -> object:
    app_id, _ = await herald.create_app()
    request = admin.RotateAppKeyRequest(app_id=app_id, grace_period=length)
    return await herald.admin_stub.RotateAppKey(request, metadata=herald.admin)


async def _frequency_window(herald: Herald, length: Duration) -> object:
    rule = routing_service_pb2.FrequencyRule(category=common_pb2.CATEGORY_MARKETING, max_deliveries=3, window=length)
    request = routing_service_pb2.CreateFrequencyRuleRequest(rule=rule)
    return await herald.routing.CreateFrequencyRule(request, metadata=herald.admin)


async def _inbox_token_ttl(herald: Herald, length: Duration) -> object:
    _, key = await herald.create_app(("inbox",))
    request = inbox_service_pb2.CreateInboxTokenRequest(user_id="u-1", ttl=length)
    return await herald.inbox.CreateInboxToken(request, metadata=key)


FIELDS: dict[str, tuple[Call, str]] = {
    "escalation step delay": (_escalation, "template.escalation[0].delay"),
    "digest window": (_digest, "template.digest.window"),
    "key rotation grace": (_grace, "grace_period"),
    "frequency rule window": (_frequency_window, "rule.window"),
    "inbox token ttl": (_inbox_token_ttl, "ttl"),
}


@pytest.mark.parametrize("where", FIELDS)
async def test_a_malformed_duration_is_invalid_argument_naming_its_field(herald: Herald, where: str) -> None:
    call, field = FIELDS[where]
    for how, length in MALFORMED.items():
        error = await rpc_error(call(herald, length))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (how, error.details())
        assert field in bad_fields(error), (how, bad_fields(error))
