"""The bounded Jinja2 sandbox templates render in (herald/libs/templating.py renders; this bounds the work).

A template is written by people outside the herald team, so it runs in Jinja2's
SandboxedEnvironment (no attribute access to Python internals, no file or network
access) with StrictUndefined, so a missing variable is an error rather than a
blank. Rendering is bounded in work and memory, not only in output: ranges of at
most MAX_RANGE, loops nested at most MAX_LOOP_DEPTH deep and MAX_ITERATIONS
iterations in all (loops that print nothing included), no string or list built
by `*` longer than MAX_OUTPUT_CHARS and no power past MAX_EXPONENT, no width
past MAX_OUTPUT_CHARS (a padding method or filter, a format's field width);
templating checks the output's size and MAX_RENDER_SECONDS as it is produced.
"""

import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

MAX_OUTPUT_CHARS = 64 * 1024
MAX_RANGE = 1000
MAX_LOOP_DEPTH = 2
MAX_ITERATIONS = 100_000
MAX_EXPONENT = 1024
MAX_RENDER_SECONDS = 0.5


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


def sandbox(autoescape: bool, finalize: Callable[[Any], Any] | None = None) -> SandboxedEnvironment:
    env = _Sandbox(undefined=StrictUndefined, autoescape=autoescape, finalize=finalize, keep_trailing_newline=True)
    env.globals["range"] = _bounded_range
    env.filters["format"] = _printf_bounded
    # The filters that build a string or a list as wide as a number they are given.
    env.filters.update({name: _width_bounded(name) for name in ("center", "indent", "batch")})
    return env


@contextmanager
def budget() -> Iterator[float]:
    """The work a render may spend, for the render in progress; yields its deadline (time.monotonic)."""
    deadline = time.monotonic() + MAX_RENDER_SECONDS
    token = _budget.set(_Budget(MAX_ITERATIONS, deadline))
    try:
        yield deadline
    finally:
        _budget.reset(token)


def loop_depth(node: nodes.Node) -> int:
    deepest = max((loop_depth(child) for child in node.iter_child_nodes()), default=0)
    return deepest + 1 if isinstance(node, nodes.For) else deepest
