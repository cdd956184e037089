"""Templates are written outside the herald team: they render strictly and can never reach Python internals, and
a variable is escaped by what the part it goes into is (HTML, JSON, plain text)."""

import json

import pytest
from herald.v1 import common_pb2

from herald.libs import template_sandbox, templating


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
        ("{{ [1, 2]|slice(100000)|list|length }}", {}, "slice with a width"),
        # Doubling a value step by step: each step is small, the value grows without end (as the ones below,
        # these build only a few hundred thousand characters unbounded, enough to pass the bound).
        (
            "{% set ns = namespace(s=s) %}{% for i in range(12) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
            "{{ ns.s|length }}",
            {"s": "x" * 1000},
            "'~' would build",
        ),
        ("{{ (s * 30000 + s * 30000)|length }}", {"s": "xy"}, "'\\+' would build"),
        # One step whose result is the product of two values within the bound.
        ("{{ (s * 3000)|replace('x', s * 100)|length }}", {"s": "x"}, "replace would build"),
        ("{{ (s * 3000).replace('', s * 100)|length }}", {"s": "x"}, "replace would build"),
        ("{{ ([s * 1000] * 100)|join|length }}", {"s": "y"}, "join would build"),
        ("{{ ''.join([s * 1000] * 100)|length }}", {"s": "y"}, "join would build"),
        ("{{ ([{'a': s * 1000}] * 100)|join(attribute='a')|length }}", {"s": "y"}, "join would build"),
        ("{{ ([[s] * 1000] * 100)|sum(start=[])|length }}", {"s": "y"}, "sum would build"),
        ("{{ (s * 1000).translate({120: s * 100})|length }}", {"s": "x"}, "translate would build"),
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


def test_joins_and_replacements_within_the_bounds_render_as_jinja_would() -> None:
    source = (
        "{{ 'a' ~ b ~ 'c' }} {{ 'ab'|replace('a', 'x') }} {{ 'a-b-c'.replace('-', '+', 1) }} {{ [1, 2]|join(',') }} "
        "{{ ','.join(['x', 'y']) }} {{ [{'n': 'p'}, {'n': 'q'}]|join('/', attribute='n') }} {{ [1, 2]|sum }} "
        "{{ [[1], [2]]|sum(start=[]) }} {{ 'abc'.translate({97: 'A'}) }} {{ [1, 2, 3]|slice(2)|list }} {{ b + 'y' }}"
    )
    assert templating.render(source, {"b": "B"}) == "aBc xb a+b-c 1,2 x,y p/q 3 [1, 2] Abc [[1, 2], [3]] By"
    assert templating.render("{{ a ~ b }}", {"a": "<", "b": ">"}, templating.HTML) == "&lt;&gt;"


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


PHISH = '<a href="http://127.0.0.1:1/phish">click</a><script>alert(1)</script>'


def _email(html_body: str, values: dict[str, str]) -> str:
    content = common_pb2.ChannelContent(channel="email", subject="{{ x }}", body="{{ x }}", html_body=html_body)
    rendered = templating.render_content(content, values)
    assert rendered.subject == rendered.body == values["x"]  # plain text parts as given
    return rendered.html_body


def test_html_escapes_variables_unless_the_author_marks_them_safe() -> None:
    html = _email("<p>{{ x }}</p>", {"x": PHISH})
    assert "<a" not in html and "<script" not in html
    assert "&lt;a href=&#34;http://127.0.0.1:1/phish&#34;&gt;click&lt;/a&gt;&lt;script&gt;" in html
    assert _email("<p>{{ x|safe }}</p>", {"x": "<b>bold</b>"}) == "<p><b>bold</b></p>"


@pytest.mark.parametrize(
    "href",
    [
        '"javascript:alert(1)"',
        "'JavaScript:alert(1)'",
        '" javascript:alert(1)"',
        '"java\tscript:alert(1)"',
        '"jav&#x61;script:alert(1)"',
        '"&#106;avascript:alert(1)"',
        "javascript:alert(1)",
        '"vbscript:msgbox(1)"',
        '"data:text/html;base64,PHNjcmlwdD4="',
    ],
)
def test_links_that_run_code_are_neutralised_however_spelt(href: str) -> None:
    html = _email(f'<a title="a>b" href={href}>go</a><form action={href}></form>{{{{ x }}}}', {"x": "1"})
    assert html == '<a title="a>b" href="#">go</a><form action="#"></form>1'
    ordinary = (  # links elsewhere, an image's data: source and the words stay as written
        '<a href="https://shop.example.com/?a=1&amp;b=2">javascript: is text here</a>'
        '<img src="data:image/png;base64,AA==">'
    )
    assert _email(ordinary + "{{ x }}", {"x": "1"}) == ordinary + "1"


def test_a_json_body_gets_variables_as_string_content() -> None:
    content = common_pb2.ChannelContent(channel="webhook", body='{"text": "Order {{ order }} shipped", "n": {{ n }}}')
    rendered = templating.render_content(content, {"order": 'a","admin":true,"x":"\n', "n": "3"})
    assert json.loads(rendered.body) == {"text": 'Order a","admin":true,"x":"\n shipped', "n": 3}
    trusted = common_pb2.ChannelContent(channel="webhook", body='{"items": {{ items|tojson }}}')
    assert json.loads(templating.render_content(trusted, {"items": [{"a": '"'}]}).body) == {"items": [{"a": '"'}]}
    plain = common_pb2.ChannelContent(channel="sms", body='{"text": "{{ order }}"}')
    assert templating.render_content(plain, {"order": 'a"b'}).body == '{"text": "a"b"}'


@pytest.mark.parametrize(
    "value", ['a"b', "back\\slash", "line\nbreak\x00\x1f", "\u2028\u00e9\u4e2d", "\x7f", "", "plain"]
)
def test_a_json_body_with_every_variable_in_a_string_renders_to_json_whatever_the_value(value: str) -> None:
    """Such a body is not parsed after rendering (it is JSON by construction): every value must keep it so."""
    content = common_pb2.ChannelContent(channel="webhook", body='{"a": "{{ v }}", "b": ["x{{ v }}y", "{{ w }}"]}')
    rendered = templating.render_content(content, {"v": value, "w": value * 2})
    assert json.loads(rendered.body) == {"a": value, "b": [f"x{value}y", value * 2]}


def test_a_json_body_that_does_not_render_to_json_is_an_error() -> None:
    content = common_pb2.ChannelContent(channel="webhook", body='{"n": {{ n }}}')
    with pytest.raises(templating.TemplateError, match="body: does not render to valid JSON"):
        templating.render_content(content, {"n": "not a number"})
    assert templating.sample_problem("webhook", "body", '{"text": {{ x }}', digest=False)
    assert templating.sample_problem("webhook", "body", '{"n": {{ n }}, "c": {{ count }}}', digest=True) is None
    assert templating.sample_problem("webhook", "body", "{{ x }} is not JSON", digest=False) is None


@pytest.mark.parametrize(
    "source",
    ["Hello {{ name }}, order {{ n }}.", "{{ name }}{{ name }}", "<p>{{ name }}</p>\n", '{"t": "{{ name }}"}', "x"],
)
@pytest.mark.parametrize("kind", [templating.TEXT, templating.HTML, templating.JSON])
@pytest.mark.parametrize("value", ["a\"b<c>&'d", "line\nnext\u0001", "ünï 中文", "", 12, ["a", {"b": 1}]])
def test_a_template_that_only_puts_variables_in_renders_as_jinja_would(source: str, kind: str, value: object) -> None:
    """Such templates are rendered without Jinja (most are of this kind, and Jinja's cost per render was a tenth
    of routing's): the result is the same, character for character, escaping included."""
    values = {"name": value, "n": 7}
    assert templating.render(source, values, kind) == templating._render(templating._compile(source, kind), values)


def test_a_template_that_only_puts_variables_in_fails_as_jinja_would() -> None:
    with pytest.raises(templating.TemplateError, match="missing variable: 'n' is undefined"):
        templating.render("{{ name }} {{ n }}", {"name": "x"})
    with pytest.raises(templating.TemplateError, match="limit"):
        templating.render("{{ name }}{{ name }}", {"name": "x" * (template_sandbox.MAX_OUTPUT_CHARS // 2 + 1)})
    assert templating.render("{{ range }}", {"range": "given"}) == "given"  # a variable shadows a global


def test_link_origins_are_the_hosts_the_author_wrote() -> None:
    source = (
        '<a href="https://Shop.example.com/o/{{ id }}">o</a><a class="{{ c }}" href="http://b.example:8080/">b</a>'
        '<a href="{{ url }}">v</a><a href="https://{{ host }}/">h</a>'
    )
    assert templating.link_origins(source) == ("http://b.example:8080", "https://shop.example.com")
