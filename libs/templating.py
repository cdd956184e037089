"""Sandboxed Jinja2 rendering, shared by intake (render-check at Send) and router (render per recipient).

A template is written by people outside the herald team, so it runs in Jinja2's
SandboxedEnvironment (no attribute access to Python internals, no file or network
access) with StrictUndefined, so a missing variable is an error rather than a blank.
"""

from functools import lru_cache

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

MAX_OUTPUT_CHARS = 64 * 1024

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class TemplateError(Exception):
    """The template cannot be rendered; the message says why in words a template author can act on."""


def check_syntax(source: str) -> None:
    try:
        _compile(source)
    except TemplateSyntaxError as e:
        raise TemplateError(f"syntax error on line {e.lineno}: {e.message}") from e


def variables(source: str) -> set[str]:
    """The variables a template needs."""
    return set(meta.find_undeclared_variables(_env.parse(source)))


def render(source: str, values: dict[str, str]) -> str:
    try:
        out = _compile(source).render(values)
    except UndefinedError as e:
        raise TemplateError(f"missing variable: {e.message}") from e
    except SecurityError as e:
        raise TemplateError(f"not allowed in a template: {e}") from e
    except TemplateSyntaxError as e:
        raise TemplateError(f"syntax error on line {e.lineno}: {e.message}") from e
    except Exception as e:  # a template author's bug, e.g. a filter applied to the wrong type
        raise TemplateError(f"cannot render: {e}") from e
    if len(out) > MAX_OUTPUT_CHARS:
        raise TemplateError(f"rendered output is {len(out)} characters; the limit is {MAX_OUTPUT_CHARS}")
    return out


@lru_cache(maxsize=1024)
def _compile(source: str) -> Template:
    return _env.from_string(source)
