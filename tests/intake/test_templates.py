"""Templates: immutable versions a message pins, archive, list, preview, locales, rich per-channel content."""

import uuid

import grpc
import pytest
from google.protobuf import duration_pb2
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import common_pb2, directory_service_pb2
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, all_final, bad_fields, rpc_error
from tests.helpers.webhook_sink import WebhookSink

C = common_pb2.ChannelContent


def _template(template_id: str, *contents: C) -> admin.Template:
    return admin.Template(template_id=template_id, category=common_pb2.CATEGORY_NOTIFICATION, contents=contents)


async def test_update_adds_a_version_and_each_message_pins_its_own(herald: Herald, sink: WebhookSink) -> None:
    template_id = f"t-{uuid.uuid4().hex[:8]}"
    created = await herald.admin_stub.CreateTemplate(
        admin.CreateTemplateRequest(
            template=_template(template_id, C(channel="webhook", body='{"v": 1, "n": "{{ n }}"}'))
        ),
        metadata=herald.admin,
    )
    assert created.version == 1 and list(created.variables) == ["n"]
    _, app = await herald.create_app()
    path = f"/versions/{uuid.uuid4().hex[:8]}"
    request = msg.SendRequest(
        template_id=template_id, recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})], variables={"n": "x"}
    )
    first = await herald.send(app, request)
    updated = await herald.admin_stub.UpdateTemplate(
        admin.UpdateTemplateRequest(template=_template(template_id, C(channel="webhook", body='{"v": 2}'))),
        metadata=herald.admin,
    )
    assert updated.version == 2 and list(updated.variables) == []
    second = await herald.send(app, request)
    assert (await herald.wait_message(app, first, all_final)).template_version == 1
    assert (await herald.wait_message(app, second, all_final)).template_version == 2
    bodies = sorted(r.body for r in await sink.wait_for(path, 2))
    assert bodies == [b'{"v": 1, "n": "x"}', b'{"v": 2}']

    old = await herald.admin_stub.GetTemplate(
        admin.GetTemplateRequest(template_id=template_id, version=1), metadata=herald.admin
    )
    assert old.contents[0].body == '{"v": 1, "n": "{{ n }}"}'
    latest = await herald.admin_stub.GetTemplate(
        admin.GetTemplateRequest(template_id=template_id), metadata=herald.admin
    )
    assert latest.version == 2


async def test_archived_template_refuses_new_sends_and_leaves_the_list(herald: Herald) -> None:
    template_id = await herald.create_template({"webhook": "{}"})
    _, app = await herald.create_app()
    archived = await herald.admin_stub.ArchiveTemplate(
        admin.ArchiveTemplateRequest(template_id=template_id), metadata=herald.admin
    )
    assert archived.HasField("archive_time")
    request = msg.SendRequest(
        template_id=template_id, recipients=[msg.Recipient(addresses={"webhook": "https://x.example/"})]
    )
    error = await rpc_error(herald.messages.Send(request, metadata=app))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    update = herald.admin_stub.UpdateTemplate(
        admin.UpdateTemplateRequest(template=_template(template_id, C(channel="webhook", body="{}"))),
        metadata=herald.admin,
    )
    assert (await rpc_error(update)).code() == grpc.StatusCode.FAILED_PRECONDITION

    async def listed(show_archived: bool) -> list[str]:
        ids: list[str] = []
        token = ""
        while True:
            page = await herald.admin_stub.ListTemplates(
                admin.ListTemplatesRequest(page_size=3, page_token=token, show_archived=show_archived),
                metadata=herald.admin,
            )
            ids += [t.template_id for t in page.templates]
            if not (token := page.next_page_token):
                return ids

    visible, everything = await listed(False), await listed(True)
    assert template_id not in visible and template_id in everything
    assert everything == sorted(everything) and len(everything) == len(set(everything))


async def test_preview_renders_in_the_requested_locale_with_fallback(herald: Herald) -> None:
    template_id = f"t-{uuid.uuid4().hex[:8]}"
    await herald.admin_stub.CreateTemplate(
        admin.CreateTemplateRequest(
            template=_template(
                template_id,
                C(
                    channel="email",
                    subject="Code {{ code }}",
                    body="Your code is {{ code }}",
                    html_body="<b>{{ code }}</b>",
                ),
                C(channel="email", locale="zh", subject="验证码 {{ code }}", body="您的验证码是 {{ code }}"),
                C(channel="apns", subject="Code", body="{{ code }}", data={"deeplink": "app://code/{{ code }}"}),
            )
        ),
        metadata=herald.admin,
    )

    async def preview(locale: str) -> dict[str, common_pb2.ChannelContent]:
        reply = await herald.admin_stub.PreviewTemplate(
            admin.PreviewTemplateRequest(template_id=template_id, variables={"code": "4711"}, locale=locale),
            metadata=herald.admin,
        )
        return {c.channel: c for c in reply.contents}

    default, chinese = await preview(""), await preview("zh-CN")
    assert default["email"].subject == "Code 4711" and default["email"].html_body == "<b>4711</b>"
    assert chinese["email"].subject == "验证码 4711" and chinese["email"].locale == "zh"
    assert dict(chinese["apns"].data) == {"deeplink": "app://code/4711"}, (
        "a channel without zh falls back to the default"
    )
    missing = herald.admin_stub.PreviewTemplate(
        admin.PreviewTemplateRequest(template_id=template_id), metadata=herald.admin
    )
    error = await rpc_error(missing)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "variables" in bad_fields(error)


async def test_recipient_gets_the_content_of_their_locale(herald: Herald, sink: WebhookSink) -> None:
    template_id = f"t-{uuid.uuid4().hex[:8]}"
    await herald.admin_stub.CreateTemplate(
        admin.CreateTemplateRequest(
            template=_template(
                template_id, C(channel="webhook", body="hello"), C(channel="webhook", locale="zh-CN", body="你好")
            )
        ),
        metadata=herald.admin,
    )
    user_id, path = f"u-{uuid.uuid4().hex[:6]}", f"/locale/{uuid.uuid4().hex[:8]}"
    await herald.directory.UpsertUser(
        directory_service_pb2.UpsertUserRequest(
            user=directory_service_pb2.User(user_id=user_id, addresses={"webhook": sink.url(path)}, locale="zh-CN")
        ),
        metadata=herald.admin,
    )
    _, app = await herald.create_app()
    recipients = [msg.Recipient(user_id=user_id), msg.Recipient(user_id=user_id, locale="en")]
    message_id = await herald.send(app, msg.SendRequest(template_id=template_id, recipients=recipients))
    await herald.wait_message(app, message_id, lambda m: all_final(m, 2))
    assert sorted(r.body.decode() for r in await sink.wait_for(path, 2)) == ["hello", "你好"]


async def test_send_missing_a_variable_names_it_before_anything_is_queued(herald: Herald) -> None:
    template_id = await herald.create_template({"webhook": "{{ a }} {{ b }}"})
    _, app = await herald.create_app()
    request = msg.SendRequest(
        template_id=template_id,
        recipients=[msg.Recipient(addresses={"webhook": "https://x.example/"})],
        variables={"a": "1"},
    )
    error = await rpc_error(herald.messages.Send(request, metadata=app))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'b'" in (error.details() or "") and "'a'" not in (error.details() or "")


@pytest.mark.parametrize(
    ("contents", "field"),
    [
        ((C(channel="webhook", locale="zh", body="x"),), "template.contents"),
        (
            (C(channel="webhook", body="x"), C(channel="webhook", locale="not a locale", body="y")),
            "template.contents[1].locale",
        ),
        ((C(channel="webhook", body="x"), C(channel="webhook", body="y")), "template.contents[1]"),
        ((C(channel="webhook", body="x", data={"k": "{{ oops"}),), "template.contents[0].data[k]"),
        ((C(channel="webhook", body="{% for i in range(5000) %}{% endfor %}x"),), ""),
    ],
)
async def test_invalid_template_names_the_field(herald: Herald, contents: tuple[C, ...], field: str) -> None:
    request = admin.CreateTemplateRequest(template=_template(f"t-{uuid.uuid4().hex[:8]}", *contents))
    call = herald.admin_stub.CreateTemplate(request, metadata=herald.admin)
    if not field:  # syntactically fine, refused when rendered: the render-check of a Send catches it
        created = await call
        _, app = await herald.create_app()
        send = msg.SendRequest(
            template_id=created.template_id, recipients=[msg.Recipient(addresses={"webhook": "https://x.example/"})]
        )
        error = await rpc_error(herald.messages.Send(send, metadata=app))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "range" in (error.details() or "")
        return
    error = await rpc_error(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_fields(error)


UNKNOWN_FILTER_OR_TEST = [
    ("body", "{{ n|no_such_filter }}", "no filter named 'no_such_filter'"),
    ("subject", "{% if n is no_such_test %}!{% endif %}", "no test named 'no_such_test'"),
]


@pytest.mark.parametrize(("part", "source", "says"), UNKNOWN_FILTER_OR_TEST)
async def test_an_unknown_filter_or_test_is_refused_when_the_template_is_stored(
    herald: Herald, part: str, source: str, says: str
) -> None:
    """Stored, it would fail every later read and send of the template; its author can fix it now."""
    content = C(channel="webhook", body="x")
    setattr(content, part, source)
    request = admin.CreateTemplateRequest(template=_template(f"t-{uuid.uuid4().hex[:8]}", content))
    error = await rpc_error(herald.admin_stub.CreateTemplate(request, metadata=herald.admin))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert says in bad_fields(error)[f"template.contents[0].{part}"]


@pytest.mark.parametrize(("part", "source", "says"), UNKNOWN_FILTER_OR_TEST)
async def test_an_unknown_filter_or_test_is_refused_when_the_template_is_updated(
    herald: Herald, part: str, source: str, says: str
) -> None:
    """A new version is checked as a new template is: refused, the template keeps its working version, so
    sends go on rendering it."""
    template_id = f"t-{uuid.uuid4().hex[:8]}"
    good = C(channel="webhook", subject="Hi {{ n }}", body='{"n": "{{ n }}"}')
    await herald.admin_stub.CreateTemplate(
        admin.CreateTemplateRequest(template=_template(template_id, good)), metadata=herald.admin
    )
    bad = C(channel="webhook", subject="Hi", body="x")
    setattr(bad, part, source)
    request = admin.UpdateTemplateRequest(template=_template(template_id, bad))
    error = await rpc_error(herald.admin_stub.UpdateTemplate(request, metadata=herald.admin))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert says in bad_fields(error)[f"template.contents[0].{part}"]

    latest = await herald.admin_stub.GetTemplate(
        admin.GetTemplateRequest(template_id=template_id), metadata=herald.admin
    )
    assert latest.version == 1
    assert list(latest.contents) == [good]


def _seconds(n: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=n)


def _step(channel: str, seconds: int) -> admin.EscalationStep:
    return admin.EscalationStep(channel=channel, delay=_seconds(seconds))


REACH_MISTAKES = [
    ({"escalation": [_step("email", 60)]}, "template.escalation[0].channel"),  # no email content
    ({"escalation": [_step("inbox", 60)]}, "template.escalation[0].channel"),
    ({"escalation": [_step("sms", 0)]}, "template.escalation[0].delay"),
    ({"escalation": [_step("sms", 600), _step("webhook", 60)]}, "template.escalation[1].delay"),
    ({"escalation": [_step("sms", 60), _step("webhook", 120)]}, "template.escalation"),  # nothing at once
    ({"digest": admin.Digest(window=_seconds(0))}, "template.digest.window"),
    ({"digest": admin.Digest(window=_seconds(60), key="a b")}, "template.digest.key"),
    ({"digest": admin.Digest(window=_seconds(60)), "category": common_pb2.CATEGORY_CRITICAL}, "template.digest"),
]


@pytest.mark.parametrize(("changes", "field"), REACH_MISTAKES)
async def test_a_bad_escalation_or_digest_names_the_field(
    herald: Herald, changes: dict[str, object], field: str
) -> None:
    contents = [C(channel=c, body="{{ n }}") for c in ("sms", "webhook")]
    if "escalation" not in changes or field != "template.escalation":
        contents.append(C(channel="inbox", body="{{ n }}"))
    template = _template(f"t-{uuid.uuid4().hex[:8]}", *contents)
    for name, value in changes.items():
        if isinstance(value, list):
            getattr(template, name).extend(value)
        elif isinstance(value, int):
            setattr(template, name, value)
        else:
            getattr(template, name).CopyFrom(value)
    error = await rpc_error(
        herald.admin_stub.CreateTemplate(admin.CreateTemplateRequest(template=template), metadata=herald.admin)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_fields(error), bad_fields(error)


async def test_a_digest_template_asks_senders_only_for_their_own_variables(herald: Herald) -> None:
    template = _template(
        f"t-{uuid.uuid4().hex[:8]}",
        C(channel="inbox", body="{{ count }}: {% for i in items %}{{ i.n }}{% endfor %} {{ doc }}"),
    )
    template.digest.window.FromSeconds(60)
    created = await herald.admin_stub.CreateTemplate(
        admin.CreateTemplateRequest(template=template), metadata=herald.admin
    )
    assert list(created.variables) == ["doc"]
    assert created.digest.window.seconds == 60
    preview = await herald.admin_stub.PreviewTemplate(
        admin.PreviewTemplateRequest(template_id=created.template_id, variables={"n": "7", "doc": "plan"}),
        metadata=herald.admin,
    )
    assert preview.contents[0].body == "1: 7 plan"  # the digest of this one send


PHISH = '<a href="http://127.0.0.1:1/phish">click</a><script>alert(1)</script>'


async def test_preview_escapes_variables_in_html_and_keeps_what_the_author_marks_safe(herald: Herald) -> None:
    html = '<p>{{ x }}</p>{{ trusted|safe }}<a href="javascript:alert(1)">js</a>'
    template_id = f"t-{uuid.uuid4().hex[:8]}"
    content = C(channel="email", subject="{{ x }}", body="{{ x }}", html_body=html)
    await herald.admin_stub.CreateTemplate(
        admin.CreateTemplateRequest(template=_template(template_id, content)), metadata=herald.admin
    )
    preview = await herald.admin_stub.PreviewTemplate(
        admin.PreviewTemplateRequest(template_id=template_id, variables={"x": PHISH, "trusted": "<b>ok</b>"}),
        metadata=herald.admin,
    )
    [rendered] = preview.contents
    assert rendered.html_body == (
        "<p>&lt;a href=&#34;http://127.0.0.1:1/phish&#34;&gt;click&lt;/a&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
        '</p><b>ok</b><a href="#">js</a>'
    )
    assert rendered.subject == rendered.body == PHISH  # plain text, as given


async def test_a_json_body_that_cannot_render_to_json_is_refused(herald: Herald) -> None:
    template_id = f"t-{uuid.uuid4().hex[:8]}"
    broken = _template(template_id, C(channel="webhook", body='{"text": {{ x }}'))
    error = await rpc_error(
        herald.admin_stub.CreateTemplate(admin.CreateTemplateRequest(template=broken), metadata=herald.admin)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must render to JSON" in bad_fields(error)["template.contents[0].body"]

    number = _template(template_id, C(channel="webhook", body='{"n": {{ n }}}'))
    await herald.admin_stub.CreateTemplate(admin.CreateTemplateRequest(template=number), metadata=herald.admin)
    error = await rpc_error(
        herald.admin_stub.UpdateTemplate(admin.UpdateTemplateRequest(template=broken), metadata=herald.admin)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "template.contents[0].body" in bad_fields(error)

    _, app = await herald.create_app()
    send = msg.SendRequest(
        template_id=template_id,
        recipients=[msg.Recipient(addresses={"webhook": "https://x.example/"})],
        variables={"n": '1, "admin": true'},
    )
    error = await rpc_error(herald.messages.Send(send, metadata=app))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not render to valid JSON" in bad_fields(error)["variables"]
