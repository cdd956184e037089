"""Jinja2 rendering, shared by intake (validation, render-check, preview) and router (per recipient), in the
bounded sandbox of herald/libs/template_sandbox.py.

Variables are escaped by what the part is (part_kind): an e-mail's html_body is HTML, so variables are
HTML-escaped unless the author marks a value trusted (`{{ x|safe }}`), and its javascript:, vbscript: and data:
links are neutralised; a webhook body that is JSON (its source starts with `{` or `[`) gets every variable as JSON
string content and must render to valid JSON; every other part is plain text, as given.
"""

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from herald.v1 import admin_service_pb2, common_pb2
from jinja2 import Template, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from markupsafe import Markup, escape

from herald.libs import links, template_sandbox
from herald.libs.template_sandbox import MAX_LOOP_DEPTH, MAX_OUTPUT_CHARS, MAX_RENDER_SECONDS

TEXT_PARTS = ("subject", "body", "html_body")
# What a digest template renders with besides the first send's variables: every send's variables, and how many.
DIGEST_VARIABLES = frozenset({"items", "count"})
# What a part is, which decides how its variables are escaped (part_kind).
TEXT, HTML, JSON = "text", "html", "json"
# How many characters an escaped character may become at most: '"' is '&#34;' in HTML, a control character
# '\u0001' in JSON.
ESCAPE_GROWTH = {TEXT: 1, HTML: 5, JSON: 6}
# Channels whose body is sent as it renders, so a JSON body stays JSON (the others wrap their body in a payload).
JSON_BODY_CHANNELS = frozenset({"webhook"})


def _json_string_content(value: Any) -> Any:
    """A variable in a JSON body: the inside of a JSON string, so it cannot close the string it is put in. What
    the author marked trusted (`|safe`, `|tojson`) goes in as it is; text with nothing to escape (most values)
    as it is too."""
    if isinstance(value, Markup):
        return value
    text = str(value)
    return text if _NOTHING_TO_ESCAPE.fullmatch(text) else json.dumps(text, ensure_ascii=False)[1:-1]


# What json.dumps(ensure_ascii=False) leaves alone inside a string: all but quotes, backslashes and control characters.
_NOTHING_TO_ESCAPE = re.compile(r'[^"\\\x00-\x1f]*')


# One sandbox per kind of part, alike but for how a variable is put in.
_ENVIRONMENTS = {
    TEXT: template_sandbox.sandbox(False),
    HTML: template_sandbox.sandbox(True),
    JSON: template_sandbox.sandbox(False, _json_string_content),
}
_env = _ENVIRONMENTS[TEXT]


class TemplateError(Exception):
    """The template cannot be rendered; the message says why in words a template author can act on."""


def check_syntax(source: str) -> None:
    try:
        ast = _env.parse(source)
    except TemplateSyntaxError as e:
        raise TemplateError(f"syntax error on line {e.lineno}: {e.message}") from e
    if template_sandbox.loop_depth(ast) > MAX_LOOP_DEPTH:
        raise TemplateError(f"loops are nested more than {MAX_LOOP_DEPTH} deep")
    # Jinja2 looks filters and tests up only when it compiles or renders: a stored template with an unknown
    # one would fail every later read and render of it, so it is refused here, when its author can fix it.
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        kind, known = ("filter", _env.filters) if isinstance(node, nodes.Filter) else ("test", _env.tests)
        if node.name not in known:
            raise TemplateError(f"line {node.lineno}: no {kind} named '{node.name}'")


@lru_cache(maxsize=4096)
def variables(source: str) -> frozenset[str]:
    """The variables a template needs."""
    return frozenset(meta.find_undeclared_variables(_env.parse(source)))


@lru_cache(maxsize=4096)
def _pieces(source: str) -> tuple[tuple[str, bool], ...] | None:
    """A source that only puts variables into text ("Hello {{ name }}"), in order: (its text, False) and (a
    variable's name, True). None for a source that does more (filters, conditions, loops)."""
    pieces: list[tuple[str, bool]] = []
    for node in _env.parse(source).body:
        if not isinstance(node, nodes.Output):
            return None
        for item in node.nodes:
            if isinstance(item, nodes.TemplateData):
                pieces.append((item.data, False))
            elif isinstance(item, nodes.Name) and item.ctx == "load":
                pieces.append((item.name, True))
            else:
                return None
    return tuple(pieces)


def substitutions(source: str) -> tuple[int, tuple[str, ...]] | None:
    """For a source that only puts variables into text: the characters of its own text, and the variables it puts
    in, once per use - what it renders to is exactly that long, and it cannot fail once every variable is given.
    None for a source that does more: only rendering can tell."""
    pieces = _pieces(source)
    if pieces is None:
        return None
    return sum(len(text) for text, variable in pieces if not variable), tuple(n for n, variable in pieces if variable)


# How each kind of part puts a variable in, as its Jinja environment does (autoescape, finalize).
_PUT_IN: dict[str, Callable[[Any], str]] = {
    TEXT: str,
    HTML: lambda value: str(escape(value)),
    JSON: lambda value: str(_json_string_content(value)),
}


def _substituted(source: str, values: Mapping[str, Any], kind: str) -> str | None:
    """What Jinja renders a source that only puts variables into text to, without Jinja: a sandboxed render costs
    the router a tenth of its CPU per delivery, and most templates are of this kind. None when Jinja must render
    (a source that does more, or a variable not given, which Jinja reports)."""
    pieces = _pieces(source)
    if pieces is None or any(variable and text not in values for text, variable in pieces):
        return None
    put_in = _PUT_IN[kind]
    rendered = "".join(put_in(values[text]) if variable else text for text, variable in pieces)
    if len(rendered) > MAX_OUTPUT_CHARS:
        raise TemplateError(f"rendered output exceeds the limit of {MAX_OUTPUT_CHARS} characters")
    return rendered


def render(source: str, values: Mapping[str, Any], kind: str = TEXT) -> str:
    """`source` rendered with `values`, each escaped as `kind` asks."""
    if not source:
        return ""
    try:
        substituted = _substituted(source, values, kind)
        return _render(_compile(source, kind), values) if substituted is None else substituted
    except TemplateError:
        raise
    except UndefinedError as e:
        raise TemplateError(f"missing variable: {e.message}") from e
    except SecurityError as e:
        raise TemplateError(f"not allowed in a template: {e}") from e
    except TemplateSyntaxError as e:
        raise TemplateError(f"syntax error on line {e.lineno}: {e.message}") from e
    except Exception as e:  # a template author's bug, e.g. a filter applied to the wrong type
        raise TemplateError(f"cannot render: {e}") from e


def content_parts(content: common_pb2.ChannelContent) -> Iterator[tuple[str, str]]:
    """(field name, template source) for every templated field of a channel content."""
    for part in TEXT_PARTS:
        yield part, getattr(content, part)
    for key, source in sorted(content.data.items()):
        yield f"data[{key}]", source


def content_variables(content: common_pb2.ChannelContent) -> frozenset[str]:
    return frozenset().union(*(variables(source) for _, source in content_parts(content)))


def collects_digest(template: admin_service_pb2.Template) -> bool:
    return template.digest.window.ToNanoseconds() > 0


def needed_variables(template: admin_service_pb2.Template) -> frozenset[str]:
    """The variables a Send must give: those the contents use, less what herald fills in for a digest."""
    needed = frozenset().union(*(content_variables(c) for c in template.contents))
    return needed - DIGEST_VARIABLES if collects_digest(template) else needed


def digest_values(first: Mapping[str, str], items: Sequence[Mapping[str, str]], count: int) -> dict[str, Any]:
    """What a digest renders with: the first send's variables, the listed sends' as `items`, and how many sends it
    carries (more than it lists, past its listing limit)."""
    return {**first, "items": [dict(i) for i in items], "count": count}


def send_values(template: admin_service_pb2.Template, values: Mapping[str, str]) -> Mapping[str, Any]:
    """What one send renders with: its variables, and for a digest template the digest of that send alone (what
    render-checks, previews and the send's own content show)."""
    return digest_values(values, [values], 1) if collects_digest(template) else values


def part_kind(channel: str, part: str, source: str) -> str:
    """What a part is: an e-mail's html_body HTML, a webhook body whose source starts with `{` or `[` (not `{{`,
    `{%` or `{#`, which start Jinja) JSON, anything else plain text."""
    if part == "html_body":
        return HTML
    if part == "body" and channel in JSON_BODY_CHANNELS:
        start = source.lstrip()
        if start[:1] in ("{", "[") and start[:2] not in ("{{", "{%", "{#"):
            return JSON
    return TEXT


@lru_cache(maxsize=4096)
def strings_only(source: str) -> bool:
    """Whether every variable of a JSON part's source sits inside a JSON string, so it renders to JSON whatever the
    values: rendered with a quote for every variable (valid JSON only inside a string, as '\\"') it still is JSON."""
    try:
        json.loads(render(source, dict.fromkeys(variables(source), '"'), JSON))
    except (TemplateError, ValueError):
        return False
    return True


def render_part(channel: str, part: str, source: str, values: Mapping[str, Any]) -> str:
    """One part rendered as what it is: HTML with its dangerous links neutralised, JSON checked to be JSON."""
    kind = part_kind(channel, part, source)
    text = render(source, values, kind)
    if kind == HTML:
        return links.neutralised(text)
    if kind == JSON and not _json_whatever_the_values(source):
        try:
            json.loads(text)
        except ValueError as e:
            raise TemplateError(f"does not render to valid JSON ({e})") from e
    return text


def _json_whatever_the_values(source: str) -> bool:
    """Whether a JSON part renders to JSON whatever its values, so a render need not be checked: a source that only
    puts variables into text (rendered without Jinja, each value escaped as string content), each inside a string
    (strings_only)."""
    return _pieces(source) is not None and strings_only(source)


def sample_problem(channel: str, part: str, source: str, digest: bool) -> str | None:
    """Why a JSON part cannot render to JSON, found by rendering it with harmless values ("0" for every variable,
    one digest item of them): a body that is not JSON for those is refused when its template is written."""
    if part_kind(channel, part, source) != JSON:
        return None
    sample = dict.fromkeys(variables(source) - (DIGEST_VARIABLES if digest else frozenset()), "0")
    try:
        render_part(channel, part, source, digest_values(sample, [sample], 1) if digest else sample)
    except TemplateError as e:
        if "valid JSON" in str(e):
            return f"a JSON body (it starts with '{{' or '[') must render to JSON: {e}"
    return None


def link_origins(html_source: str) -> tuple[str, ...]:
    """The scheme://host of every http(s) href the author wrote in an HTML template's own text, lower-cased: the
    only places herald's tracked links may send a reader (a link from a variable is never among them)."""
    texts = (data.data for data in _env.parse(html_source).find_all(nodes.TemplateData))
    return tuple(sorted(set().union(*(links.origins(text) for text in texts))))


def render_content(content: common_pb2.ChannelContent, values: Mapping[str, Any]) -> common_pb2.ChannelContent:
    """The content with every templated field rendered; a TemplateError names the field."""
    rendered = common_pb2.ChannelContent(channel=content.channel, locale=content.locale)
    for part, source in content_parts(content):
        if not source and part in TEXT_PARTS:  # renders to "", as it already is (a webhook's content is its body)
            continue
        try:
            text = render_part(content.channel, part, source, values)
        except TemplateError as e:
            raise TemplateError(f"{part}: {e}") from e
        if part.startswith("data["):
            rendered.data[part[5:-1]] = text
        else:
            setattr(rendered, part, text)
    return rendered


def pick(contents: list[common_pb2.ChannelContent], channel: str, locale: str) -> common_pb2.ChannelContent | None:
    """The content for `channel` in `locale`, else in its language ("zh" for "zh-CN"), else the default ("")."""
    candidates = {c.locale.lower(): c for c in contents if c.channel == channel}
    wanted = locale.lower()
    for key in (wanted, wanted.split("-")[0], ""):
        if key in candidates:
            return candidates[key]
    return None


def _render(template: Template, values: Mapping[str, Any]) -> str:
    out: list[str] = []
    size = 0
    with template_sandbox.budget() as deadline:
        for chunk in template.generate(values):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateError(f"rendered output exceeds the limit of {MAX_OUTPUT_CHARS} characters")
            if time.monotonic() > deadline:
                raise TemplateError(f"rendering took longer than {MAX_RENDER_SECONDS}s")
            out.append(chunk)
    return "".join(out)


@lru_cache(maxsize=1024)
def _compile(source: str, kind: str) -> Template:
    check_syntax(source)
    return _ENVIRONMENTS[kind].from_string(source)
