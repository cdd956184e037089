"""Sandboxed Jinja2 rendering, shared by intake (validation, render-check, preview) and router (per recipient).

A template is written by people outside the herald team, so it runs in Jinja2's
SandboxedEnvironment (no attribute access to Python internals, no file or network
access) with StrictUndefined, so a missing variable is an error rather than a
blank. Rendering is bounded: ranges of at most MAX_RANGE, loops nested at most
MAX_LOOP_DEPTH deep, output of at most MAX_OUTPUT_CHARS per part, checked as it
is produced, and MAX_RENDER_SECONDS.
"""

import time
from collections.abc import Iterator, Mapping
from functools import lru_cache

from herald.v1 import common_pb2
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

MAX_OUTPUT_CHARS = 64 * 1024
MAX_RANGE = 1000
MAX_LOOP_DEPTH = 2
MAX_RENDER_SECONDS = 0.5
TEXT_PARTS = ("subject", "body", "html_body")


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range() of more than {MAX_RANGE} items")
    return r


_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_env.globals["range"] = _bounded_range


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


def render(source: str, values: Mapping[str, str]) -> str:
    if not source:
        return ""
    try:
        return _render(_compile(source), values)
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


def render_content(content: common_pb2.ChannelContent, values: Mapping[str, str]) -> common_pb2.ChannelContent:
    """The content with every templated field rendered; a TemplateError names the field."""
    rendered = common_pb2.ChannelContent(channel=content.channel, locale=content.locale)
    for part, source in content_parts(content):
        try:
            text = render(source, values)
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


def _render(template: Template, values: Mapping[str, str]) -> str:
    deadline = time.monotonic() + MAX_RENDER_SECONDS
    out: list[str] = []
    size = 0
    for chunk in template.generate(values):
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise TemplateError(f"rendered output exceeds the limit of {MAX_OUTPUT_CHARS} characters")
        if time.monotonic() > deadline:
            raise TemplateError(f"rendering took longer than {MAX_RENDER_SECONDS}s")
        out.append(chunk)
    return "".join(out)


def _loop_depth(node: nodes.Node) -> int:
    deepest = max((_loop_depth(child) for child in node.iter_child_nodes()), default=0)
    return deepest + 1 if isinstance(node, nodes.For) else deepest


@lru_cache(maxsize=1024)
def _compile(source: str) -> Template:
    check_syntax(source)
    return _env.from_string(source)
