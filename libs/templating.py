"""Sandboxed Jinja2 rendering, shared by intake (validation, render-check, preview) and router (per recipient).

A template is written by people outside the herald team, so it runs in Jinja2's
SandboxedEnvironment (no attribute access to Python internals, no file or network
access) with StrictUndefined, so a missing variable is an error rather than a
blank. Rendering is bounded in work and memory, not only in output: ranges of at
most MAX_RANGE, loops nested at most MAX_LOOP_DEPTH deep and MAX_ITERATIONS
iterations in all (loops that print nothing included), no string or list built
by `*` longer than MAX_OUTPUT_CHARS and no power past MAX_EXPONENT, no width
past MAX_OUTPUT_CHARS (a padding method or filter, a format's field width), output
of at most MAX_OUTPUT_CHARS per part, checked as it is produced, and
MAX_RENDER_SECONDS.

Variables are escaped by what the part is (part_kind): an e-mail's html_body is HTML, so variables are
HTML-escaped unless the author marks a value trusted (`{{ x|safe }}`), and its javascript:, vbscript: and data:
links are neutralised; a webhook body that is JSON (its source starts with `{` or `[`) gets every variable as JSON
string content and must render to valid JSON; every other part is plain text, as given.
"""

import json
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from herald.v1 import admin_service_pb2, common_pb2
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from libs import links

MAX_OUTPUT_CHARS = 64 * 1024
MAX_RANGE = 1000
MAX_LOOP_DEPTH = 2
MAX_ITERATIONS = 100_000
MAX_EXPONENT = 1024
MAX_RENDER_SECONDS = 0.5
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


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range() of more than {MAX_RANGE} items")
    return r


@dataclass
class _Budget:
    """What the render in progress may still spend."""

    iterations: int
    deadline: float


_budget: ContextVar[_Budget] = ContextVar("herald_render_budget")


def bounded(iterable: Iterable[Any]) -> Iterator[Any]:
    """What a for-loop walks, counted against the budget of the render in progress as it is walked."""
    budget = _budget.get(None)
    for item in iterable:
        if budget is not None:
            budget.iterations -= 1
            if budget.iterations < 0:
                raise SecurityError(f"loops ran more than {MAX_ITERATIONS} times")
            if budget.iterations % 1000 == 0 and time.monotonic() > budget.deadline:
                raise SecurityError(f"rendering took longer than {MAX_RENDER_SECONDS}s")
        yield item


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Jinja2 compiles a for-loop to a Python loop, out of the sandbox's reach: every loop walks its iterable
        through `bounded`, imported by the compiled template itself, so no template name can stand in for it."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(
                nodes.ImportedName(f"{__name__}.bounded"), [loop.iter], [], None, None, lineno=loop.lineno
            )
        return tree

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """`*` and `**` can build a value of any size in one step, before any output is checked."""
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(times, int)
                    and len(sequence) * times > MAX_OUTPUT_CHARS
                ):
                    raise SecurityError(f"'*' would build more than {MAX_OUTPUT_CHARS} items")
        elif operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"'**' with an exponent over {MAX_EXPONENT}")
        elif operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """A str method that pads to a width builds that much before any output is checked."""
        if isinstance(getattr(obj, "__self__", None), str) and getattr(obj, "__name__", "") in _PADDING:
            _check_widths(obj.__name__, [*args, *kwargs.values()])
        return super().call(context, obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """str.format and format_map, which the sandbox wraps when they are looked up: no field wider than
        MAX_OUTPUT_CHARS, written in the string or taken from the values."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        widths_from_values = _check_format(value.__self__)

        def bounded(*args: Any, **kwargs: Any) -> str:
            if widths_from_values:
                given = [*args, *kwargs.values()]
                _check_widths("format", [*given, *(v for g in given if isinstance(g, Mapping) for v in g.values())])
            return wrapped(*args, **kwargs)

        return bounded


# str methods whose numeric argument is the width of the string they build.
_PADDING = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
# A printf directive's width and precision (% formatting, the `format` filter).
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\d+|\*)?(?:\.(\d+|\*))?")


def _check_widths(what: str, numbers: Iterable[Any]) -> None:
    if any(isinstance(n, int) and n > MAX_OUTPUT_CHARS for n in numbers):
        raise SecurityError(f"{what} with a width over {MAX_OUTPUT_CHARS}")


def _check_printf(template: str, values: Any) -> None:
    for width, precision in _PRINTF.findall(template):
        if "*" in (width, precision):  # the width comes from the values
            _check_widths("'%'", values if isinstance(values, tuple) else (values,))
        _check_widths("'%'", (int(n) for n in (width, precision) if n.isdigit()))


def _check_format(template: str) -> bool:
    """Refuse a str.format field wider than MAX_OUTPUT_CHARS; True if a width comes from the values."""
    from_values = False
    for _, _, spec, _ in string.Formatter().parse(template):
        _check_widths("format", (int(n) for n in re.findall(r"\d+", spec or "")))
        from_values = from_values or "{" in (spec or "")
    return from_values


def _width_bounded(name: str) -> Callable[..., Any]:
    """Jinja2's filter `name`, refusing a width over MAX_OUTPUT_CHARS among its arguments."""
    jinja_filter = FILTERS[name]

    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_widths(name, [*args, *kwargs.values()])
        return jinja_filter(value, *args, **kwargs)

    return bounded


def _printf_bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
    """Jinja2's `format` filter (printf style), refusing a field width over MAX_OUTPUT_CHARS."""
    _check_printf(str(value), args)
    return FILTERS["format"](value, *args, **kwargs)


def _json_string_content(value: Any) -> Any:
    """A variable in a JSON body: the inside of a JSON string, so it cannot close the string it is put in. What
    the author marked trusted (`|safe`, `|tojson`) goes in as it is."""
    return value if isinstance(value, Markup) else json.dumps(str(value), ensure_ascii=False)[1:-1]


def _sandbox(autoescape: bool, finalize: Callable[[Any], Any] | None = None) -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=autoescape, finalize=finalize, keep_trailing_newline=True)
    env.globals["range"] = _bounded_range
    env.filters["format"] = _printf_bounded
    # The filters that build a string or a list as wide as a number they are given.
    env.filters.update({name: _width_bounded(name) for name in ("center", "indent", "batch")})
    return env


# One sandbox per kind of part, alike but for how a variable is put in.
_ENVIRONMENTS = {TEXT: _sandbox(False), HTML: _sandbox(True), JSON: _sandbox(False, _json_string_content)}
_env = _ENVIRONMENTS[TEXT]


class TemplateError(Exception):
    """The template cannot be rendered; the message says why in words a template author can act on."""


def check_syntax(source: str) -> None:
    try:
        ast = _env.parse(source)
    except TemplateSyntaxError as e:
        raise TemplateError(f"syntax error on line {e.lineno}: {e.message}") from e
    if _loop_depth(ast) > MAX_LOOP_DEPTH:
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
def substitutions(source: str) -> tuple[int, tuple[str, ...]] | None:
    """For a source that only puts variables into text ("Hello {{ name }}"): the characters of its own text, and the
    variables it puts in, once per use - what it renders to is exactly that long, and it cannot fail once every
    variable is given. None for a source that does more (filters, conditions, loops): only rendering can tell."""
    fixed, used = 0, []
    for node in _env.parse(source).body:
        if not isinstance(node, nodes.Output):
            return None
        for item in node.nodes:
            if isinstance(item, nodes.TemplateData):
                fixed += len(item.data)
            elif isinstance(item, nodes.Name) and item.ctx == "load":
                used.append(item.name)
            else:
                return None
    return fixed, tuple(used)


def render(source: str, values: Mapping[str, Any], kind: str = TEXT) -> str:
    """`source` rendered with `values`, each escaped as `kind` asks."""
    if not source:
        return ""
    try:
        return _render(_compile(source, kind), values)
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
def strings_only(channel: str, part: str, source: str) -> bool:
    """Whether every variable of a JSON part sits inside a JSON string, so it renders to JSON whatever the values:
    rendered with a quote for every variable (valid JSON only inside a string, as '\\"') it still is JSON."""
    try:
        render_part(channel, part, source, dict.fromkeys(variables(source), '"'))
    except TemplateError:
        return False
    return True


def render_part(channel: str, part: str, source: str, values: Mapping[str, Any]) -> str:
    """One part rendered as what it is: HTML with its dangerous links neutralised, JSON checked to be JSON."""
    kind = part_kind(channel, part, source)
    text = render(source, values, kind)
    if kind == HTML:
        return links.neutralised(text)
    if kind == JSON:
        try:
            json.loads(text)
        except ValueError as e:
            raise TemplateError(f"does not render to valid JSON ({e})") from e
    return text


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
    deadline = time.monotonic() + MAX_RENDER_SECONDS
    budget = _budget.set(_Budget(MAX_ITERATIONS, deadline))
    out: list[str] = []
    size = 0
    try:
        for chunk in template.generate(values):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateError(f"rendered output exceeds the limit of {MAX_OUTPUT_CHARS} characters")
            if time.monotonic() > deadline:
                raise TemplateError(f"rendering took longer than {MAX_RENDER_SECONDS}s")
            out.append(chunk)
    finally:
        _budget.reset(budget)
    return "".join(out)


def _loop_depth(node: nodes.Node) -> int:
    deepest = max((_loop_depth(child) for child in node.iter_child_nodes()), default=0)
    return deepest + 1 if isinstance(node, nodes.For) else deepest


@lru_cache(maxsize=1024)
def _compile(source: str, kind: str) -> Template:
    check_syntax(source)
    return _ENVIRONMENTS[kind].from_string(source)
