"""Templates are written outside the herald team: they render strictly and can never reach Python internals."""

import pytest
from herald.v1 import common_pb2

from libs import templating


def test_renders_variables() -> None:
    assert templating.render("Hi {{ name }}, code {{ code }}", {"name": "Ann", "code": "42"}) == "Hi Ann, code 42"


def test_missing_variable_is_an_error_naming_it() -> None:
    with pytest.raises(templating.TemplateError, match="'code' is undefined"):
        templating.render("code {{ code }}", {})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ name.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
    ],
)
def test_sandbox_blocks_python_internals(source: str) -> None:
    with pytest.raises(templating.TemplateError):
        templating.render(source, {"name": "x"})


def test_output_size_is_bounded_while_rendering() -> None:
    with pytest.raises(templating.TemplateError, match="limit"):
        templating.render("{% for i in range(1000) %}{% for j in range(1000) %}xxxxxxxx{% endfor %}{% endfor %}", {})


@pytest.mark.parametrize(
    ("source", "values", "says"),
    [
        # Loops that print nothing: only the output was bounded, and these held a Send for seconds.
        ("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", {}, "loops ran more"),
        ("{% for c in s %}{% for d in s %}{% endfor %}{% endfor %}", {"s": "x" * 4096}, "loops ran more"),
        # One step that builds a huge value before anything is printed.
        ("{{ ('a' * 200000000)|length }}", {}, "'\\*' would build"),
        ("{{ s * 100000 }}", {"s": "xy"}, "'\\*' would build"),
        ("{{ 7 ** 100000000 }}", {}, "exponent"),
        # A width: padding methods and filters, and format widths, build that much in one step.
        ("{{ ('a'|center(200000000))|length }}", {}, "center with a width"),
        ("{{ 'a'.ljust(200000000)|length }}", {}, "ljust with a width"),
        ("{{ n.zfill(200000000)|length }}", {"n": "5"}, "zfill with a width"),
        ("{{ '\t'.expandtabs(200000000)|length }}", {}, "expandtabs with a width"),
        ("{{ ('a\nb'|indent(200000000))|length }}", {}, "indent with a width"),
        ("{{ ([1]|batch(200000000, 'x')|list)|length }}", {}, "batch with a width"),
        ("{{ ('%200000000d' % 1)|length }}", {}, "'%' with a width"),
        ("{{ ('%*d' % (200000000, 1))|length }}", {}, "'%' with a width"),
        ("{{ ('%200000000d'|format(1))|length }}", {}, "'%' with a width"),
        ("{{ '{:>200000000}'.format(1)|length }}", {}, "format with a width"),
        ("{{ '{:{w}}'.format(1, w=200000000)|length }}", {}, "format with a width"),
        ("{{ '{x:{w}}'.format_map({'x': 1, 'w': 200000000})|length }}", {}, "format with a width"),
    ],
)
def test_work_and_memory_are_bounded_not_only_output(source: str, values: dict[str, str], says: str) -> None:
    with pytest.raises(templating.TemplateError, match=says):
        templating.render(source, values)


def test_widths_within_the_bounds_render_as_jinja_would() -> None:
    source = (
        "{{ '%05d' % 42 }} {{ '{:>6}'.format('ab') }}|{{ 'ab'|center(6) }}|{{ 'Order 1234567: %s' % n }} "
        "{{ '%.2f'|format(3.14159) }} {{ 'ab'.center(4, '*') }} {{ '{:{w}}'.format(1, w=3) }} {{ 10 % 3 }}"
    )
    assert templating.render(source, {"n": "x"}) == "00042     ab|  ab  |Order 1234567: x 3.14 *ab*   1 1"


def test_loops_within_the_bounds_render_as_jinja_would() -> None:
    source = "{% for i in range(3) if i %}{{ loop.index }}:{{ i * 2 }} {% else %}none{% endfor %}{{ 'ab' * 2 }}"
    assert templating.render(source, {}) == "1:2 2:4 abab"
    assert templating.render("{% for c in s %}{{ c }}{% else %}none{% endfor %}", {"s": ""}) == "none"


def test_ranges_and_loop_nesting_are_bounded() -> None:
    with pytest.raises(templating.TemplateError, match="range"):
        templating.render("{% for i in range(100000) %}{% endfor %}", {})
    with pytest.raises(templating.TemplateError, match="nested"):
        templating.check_syntax("{% for a in x %}{% for b in a %}{% for c in b %}{% endfor %}{% endfor %}{% endfor %}")


def test_locale_falls_back_to_language_then_default() -> None:
    contents = [
        common_pb2.ChannelContent(channel="sms", body="default"),
        common_pb2.ChannelContent(channel="sms", body="zh", locale="zh"),
        common_pb2.ChannelContent(channel="sms", body="zh-TW", locale="zh-TW"),
        common_pb2.ChannelContent(channel="email", body="mail"),
    ]

    def body(channel: str, locale: str) -> str | None:
        content = templating.pick(contents, channel, locale)
        return content.body if content else None

    assert body("sms", "zh-TW") == "zh-TW"
    assert body("sms", "zh-CN") == "zh"
    assert body("sms", "fr") == "default"
    assert body("email", "zh-CN") == "mail"
    assert body("push", "") is None


def test_render_content_renders_every_field_and_names_the_failing_one() -> None:
    content = common_pb2.ChannelContent(
        channel="apns", subject="Hi {{ n }}", body="b {{ n }}", html_body="<b>{{ n }}</b>", data={"k": "{{ n }}"}
    )
    rendered = templating.render_content(content, {"n": "1"})
    assert (rendered.subject, rendered.body, rendered.html_body, dict(rendered.data)) == (
        "Hi 1",
        "b 1",
        "<b>1</b>",
        {"k": "1"},
    )
    assert templating.content_variables(content) == {"n"}
    with pytest.raises(templating.TemplateError, match=r"data\[k\]"):
        templating.render_content(common_pb2.ChannelContent(channel="apns", body="x", data={"k": "{{ m }}"}), {})


def test_syntax_error_says_where() -> None:
    with pytest.raises(templating.TemplateError, match="line 1"):
        templating.check_syntax("{{ unclosed")


def test_variables_a_template_needs() -> None:
    assert templating.variables("{{ a }} {% if b %}{{ c | upper }}{% endif %}") == {"a", "b", "c"}
