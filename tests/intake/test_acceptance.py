"""What a Send becomes, in one process: every refusal names its field or its cause, and an accepted Send is the
AcceptedMessage the router gets. The template store, topics, shedding, ids and the rate limiter are stand-ins
(stand_ins.py) answering as told; the mesh tests (test_send_errors.py) show the same refusals reaching a caller."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from herald.v1 import admin_service_pb2, common_pb2
from herald.v1 import message_service_pb2 as msg

from herald.libs.auth import AppIdentity
from herald.libs.errors import HeraldError, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from herald.services.intake.acceptance import MAX_MESSAGE_BYTES, Acceptance, RateLimited
from herald.services.intake.common_part import CommonPart
from tests.helpers.requests import send_request
from tests.intake.stand_ins import Ids, Limiter, Shedder, Templates, Topics

APP = AppIdentity(app_id="app_1", name="checkout", allowed_channels=["webhook"])


def _template(
    bodies: dict[str, str], data: dict[str, str] | None = None, category: int = common_pb2.CATEGORY_NOTIFICATION
) -> admin_service_pb2.Template:
    """A stored template: ids are fresh, as the render plans are kept per template id and version."""
    return admin_service_pb2.Template(
        template_id=f"t-{uuid.uuid4().hex[:8]}",
        version=1,
        category=common_pb2.Category.ValueType(category),
        contents=[common_pb2.ChannelContent(channel=c, body=b, data=data or {}) for c, b in bodies.items()],
    )


CODE = _template({"webhook": "code {{ code }}", "email": "code {{ code }}"})


def _acceptance(*templates: admin_service_pb2.Template, **kwargs: object) -> Acceptance:
    return Acceptance(
        Templates(CODE, *templates),
        kwargs.get("topics", Topics()),  # type: ignore[arg-type]
        kwargs.get("shedder", Shedder()),  # type: ignore[arg-type]
        Ids(),
        kwargs.get("limiter", Limiter()),  # type: ignore[arg-type]
    )


def _request(template: str = CODE.template_id, /, **changes: object) -> msg.SendRequest:
    """test_send_errors.py's request: valid until changed."""
    return send_request(template, **changes)


async def _refusal(request: msg.SendRequest, acceptance: Acceptance | None = None) -> HeraldError:
    with pytest.raises(HeraldError) as refused:
        await (acceptance or _acceptance()).prepare(APP, request, CommonPart(APP))
    return refused.value


async def test_an_accepted_send_is_the_message_the_router_gets() -> None:
    send_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    request = _request()
    request.send_at.FromDatetime(send_at)
    accepted = await _acceptance().prepare(APP, request, CommonPart(APP))
    assert (accepted.message_id, accepted.app_id) == ("msg_app_1_1", "app_1")
    assert accepted.template == CODE
    assert list(accepted.channels) == ["webhook"] and accepted.channels_named
    assert list(accepted.recipients) == list(request.recipients)
    assert dict(accepted.variables) == {"code": "123456"}
    assert accepted.send_at.ToDatetime(tzinfo=UTC) == send_at
    assert not accepted.HasField("expire_at")


async def test_without_channels_named_every_channel_of_the_template_is_chosen() -> None:
    app = AppIdentity(app_id="app_2", name="any")
    recipient = msg.Recipient(addresses={"webhook": "https://x.example/", "email": "a@example.com"})
    accepted = await _acceptance().prepare(app, _request(channels=[], recipients=[recipient]), CommonPart(app))
    assert (list(accepted.channels), accepted.channels_named) == (["webhook", "email"], False)


async def test_a_missing_variable_names_the_field_and_the_variable() -> None:
    refusal = await _refusal(_request(variables={}))
    assert isinstance(refusal, InvalidArgument)
    assert "'code'" in refusal.fields["variables"]


async def test_a_channel_the_app_may_not_use_is_permission_denied() -> None:
    request = _request(channels=["email"], recipients=[msg.Recipient(addresses={"email": "a@example.com"})])
    refusal = await _refusal(request)
    assert isinstance(refusal, PermissionDenied)
    assert "email" in refusal.message


async def test_a_category_the_app_may_not_send_is_permission_denied() -> None:
    app = AppIdentity(app_id="app_3", name="quiet", allowed_categories=[common_pb2.CATEGORY_CRITICAL])
    with pytest.raises(PermissionDenied, match="may not send notification messages"):
        await _acceptance().prepare(app, _request(), CommonPart(app))


async def test_an_unknown_template_or_topic_is_not_found() -> None:
    assert isinstance(await _refusal(_request("no-such-template")), NotFound)
    refusal = await _refusal(_request(recipients=[], topic="news"))
    assert isinstance(refusal, NotFound) and "topic 'news' not found" in refusal.message
    topics = Topics("app_1.news")
    accepted = await _acceptance(topics=topics).prepare(APP, _request(recipients=[], topic="news"), CommonPart(APP))
    assert accepted.topic == "news"


async def test_marketing_is_refused_while_it_is_shed() -> None:
    marketing = _template({"webhook": "sale"}, category=common_pb2.CATEGORY_MARKETING)
    refusal = await _refusal(_request(marketing.template_id), _acceptance(marketing, shedder=Shedder(True)))
    assert isinstance(refusal, ResourceExhausted) and refusal.cause == "load_shed"
    await _acceptance(shedder=Shedder(True)).prepare(APP, _request(), CommonPart(APP))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"recipients": []}, "recipients"),
        ({"recipients": [msg.Recipient()]}, "recipients[0]"),
        ({"recipients": [msg.Recipient(addresses={"webhook": "ftp://x"})]}, "recipients[0].addresses[webhook]"),
        (
            {"recipients": [msg.Recipient(user_id="u\x00", addresses={"webhook": "https://x.example/"})]},
            "recipients[0].user_id",
        ),
        ({"variables": {"code": "12\x0034"}}, "variables[code]"),
        ({"idempotency_key": "key-\x00"}, "idempotency_key"),
        (
            {"recipients": [msg.Recipient(addresses={"webhook": "http://exa\\mple.com/"})]},
            "recipients[0].addresses[webhook]",
        ),
        (
            {"recipients": [msg.Recipient(addresses={"webhook": "http://a.example\r\n.com/"})]},
            "recipients[0].addresses[webhook]",
        ),
        (
            {"recipients": [msg.Recipient(addresses={"webhook": "http://example.com:99999/"})]},
            "recipients[0].addresses[webhook]",
        ),
        (
            {"recipients": [msg.Recipient(addresses={"webhook": "http://a b.example/"})]},
            "recipients[0].addresses[webhook]",
        ),
        ({"recipients": [msg.Recipient(addresses={"pigeon": "x"})]}, "recipients[0].addresses[pigeon]"),
        ({"recipients": [msg.Recipient(addresses={"inbox": "u" * 201})]}, "recipients[0].addresses[inbox]"),
        ({"channels": ["sms"]}, "channels[0]"),
        ({"template_id": ""}, "template_id"),
        ({"variables": {"code": "x" * 5000}}, "variables[code]"),
        ({"idempotency_key": "k" * 201}, "idempotency_key"),
        ({"recipients": [msg.Recipient(user_id="u" * 201)]}, "recipients[0].user_id"),
        ({"recipients": [msg.Recipient(user_id="u")] * 1001}, "recipients"),
        ({"topic": "news"}, "recipients"),
        ({"recipients": [], "topic": "Not A Key!"}, "topic"),
        ({"recipients": [msg.Recipient(user_id="u")], "variables": {f"v{n}": "x" for n in range(101)}}, "variables"),
    ],
)
async def test_a_malformed_send_names_the_field(change: dict[str, object], field: str) -> None:
    refusal = await _refusal(_request(**change))
    assert isinstance(refusal, InvalidArgument)
    assert field in refusal.fields


@pytest.mark.parametrize(
    ("when", "field", "why"),
    [
        ({"expire_at": -timedelta(minutes=1)}, "expire_at", "is in the past"),
        ({"send_at": timedelta(hours=2), "expire_at": timedelta(hours=1)}, "send_at", "is not before expire_at"),
        ({"send_at": timedelta(days=366)}, "send_at", "at most 365 days ahead"),
    ],
)
async def test_times_that_could_never_be_kept_are_refused(when: dict[str, timedelta], field: str, why: str) -> None:
    request = _request()
    for name, offset in when.items():
        getattr(request, name).FromDatetime(datetime.now(UTC) + offset)
    refusal = await _refusal(request)
    assert isinstance(refusal, InvalidArgument)
    assert why in refusal.fields[field]


async def test_a_recipient_without_user_id_needs_an_address_for_one_channel_of_the_chain() -> None:
    chained = _template({"webhook": "x", "email": "y"})
    chained.fallback_channels.extend(["email", "webhook"])
    app = AppIdentity(app_id="app_4", name="any")
    request = _request(chained.template_id, channels=[], recipients=[msg.Recipient(addresses={"sms": "+15550100"})])
    with pytest.raises(InvalidArgument) as refused:
        await _acceptance(chained).prepare(app, request, CommonPart(app))
    assert "no address for any of email, webhook" in refused.value.fields["recipients[0].addresses"]
    fine = _request(chained.template_id, channels=[], recipients=[msg.Recipient(addresses={"email": "a@x.example"})])
    await _acceptance(chained).prepare(app, fine, CommonPart(app))


@pytest.mark.parametrize("part", ["{{ n * 15 }}", "{{ n }}" * 15], ids=["rendered", "substituted"])
async def test_a_delivery_too_large_for_the_bus_is_refused_at_the_door(part: str) -> None:
    """Each part is under intake's part limit, and together they pass the 1 MiB the bus carries in one message:
    refused now, not retried by the router for ever. Whether intake renders the template to know (a filter or an
    expression) or sizes it from its variables (only substitutions)."""
    large = _template({"webhook": "{}"}, data={f"part{n}": part for n in range(20)})
    request = _request(large.template_id, variables={"n": "x" * 4000})
    refusal = await _refusal(request, _acceptance(large))
    assert isinstance(refusal, InvalidArgument)
    assert "renders to 1,2" in refusal.fields["variables"]


async def test_a_part_longer_than_a_rendering_may_be_is_refused_at_the_door() -> None:
    """Only substitutions, each variable within its limit, yet the body would pass the 64K characters a rendering
    may produce: refused now, rather than FAILED by the router."""
    long = _template({"webhook": "{{ v }}" * 17})
    refusal = await _refusal(_request(long.template_id, variables={"v": "x" * 4000}), _acceptance(long))
    assert isinstance(refusal, InvalidArgument)
    assert "exceeds the limit of 65536 characters" in refusal.fields["variables"]


async def test_long_values_the_template_does_not_use_or_that_still_fit_are_accepted() -> None:
    """Values long in all yet within every limit - most of them in variables the template does not use, or one
    that makes a part exactly as long as a rendering may be - pass: the quick bound on their total length only
    spares the exact sizing (one more use of the variable is refused: the test above)."""
    near = _template({"webhook": "{{ v }}" * 16})
    unused = {f"extra{n}": "x" * 4000 for n in range(60)}
    for variables in ({"v": "x" * 4096}, {"v": "short", **unused}):
        await _acceptance(near).prepare(APP, _request(near.template_id, variables=variables), CommonPart(APP))


async def test_a_message_too_large_for_the_bus_with_its_template_is_refused() -> None:
    recipients = [msg.Recipient(user_id=f"u{n}", variables={"code": "x" * 4000}) for n in range(140)]
    refusal = await _refusal(_request(recipients=recipients, variables={}))
    assert isinstance(refusal, InvalidArgument)
    assert f"at most {MAX_MESSAGE_BYTES}: split it" in refusal.fields["recipients"]


async def test_the_rate_limit_lets_through_what_fits_and_says_when_to_retry_the_rest() -> None:
    acceptance = _acceptance(limiter=Limiter(left=3))
    assert await acceptance.admit(APP, 2) == (2, None)
    granted, over = await acceptance.admit(APP, 5)
    assert granted == 1
    assert isinstance(over, RateLimited) and over.cause == "rate_limited"
    assert over.retry_after_seconds == 0.25
    assert "over its rate limit" in over.message and "retry in 0.25s" in over.message
