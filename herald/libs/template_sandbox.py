"""The bounded Jinja2 sandbox templates render in (herald/libs/templating.py renders; this bounds the work).

A template is written by people outside the herald team, so it runs in Jinja2's
SandboxedEnvironment (no attribute access to Python internals, no file or network
access) with StrictUndefined, so a missing variable is an error rather than a
blank. Rendering is bounded in work and memory, not only in output: ranges of at
most MAX_RANGE, loops nested at most MAX_LOOP_DEPTH deep and MAX_ITERATIONS
iterations in all (loops that print nothing included), no string or list built
by `*`, `+` or `~` longer than MAX_OUTPUT_CHARS and no power past MAX_EXPONENT,
no width past MAX_OUTPUT_CHARS (a padding method or filter, a format's field
width), no string longer than that out of a replace, a join or a translate, nor a
list out of `sum`, each refused before it is built where its size can be told;
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
from jinja2.filters import FILTERS, make_attrgetter
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

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


def bounded_text(value: Any) -> Any:
    """What a `~` built: it joins what it is given in one step, so only its result can be checked (each of its
    parts already was, when a template built it)."""
    _too_long("'~'", len(value))
    return value


class _Bounding(NodeTransformer):
    """Jinja2 compiles a for-loop to a Python loop and `~` to a join, out of the sandbox's reach: every loop walks
    its iterable through `bounded`, every `~` goes through `bounded_text`, imported by the compiled template
    itself, so no template name can stand in for them."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _imported("bounded", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _imported("bounded_text", node)


def _imported(function: str, argument: nodes.Node) -> nodes.Call:
    return nodes.Call(nodes.ImportedName(f"{__name__}.{function}"), [argument], [], None, None, lineno=argument.lineno)


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        bounded: nodes.Template = _Bounding().visit(super()._parse(source, name, filename))
        return bounded

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """`*` and `**` can build a value of any size in one step, and `+` double one at each step of a loop,
        before any output is checked."""
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(times, int)
                    and len(sequence) * times > MAX_OUTPUT_CHARS
                ):
                    raise SecurityError(f"'*' would build more than {MAX_OUTPUT_CHARS} items")
        elif operator == "+" and _sized(left) and _sized(right) and len(left) + len(right) > MAX_OUTPUT_CHARS:
            raise SecurityError(f"'+' would build more than {MAX_OUTPUT_CHARS} items")
        elif operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"'**' with an exponent over {MAX_EXPONENT}")
        elif operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """A str method that pads to a width builds that much before any output is checked; replace, join and
        translate build as much as their text times what they put in."""
        text, method = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
        if isinstance(text, str) and method in _PADDING:
            _check_widths(method, [*args, *kwargs.values()])
        elif isinstance(text, str) and method == "replace":
            _check_replace(text, *args, **kwargs)
        elif isinstance(text, str) and method == "join" and args:
            args = (_check_join(args[0], text), *args[1:])
        elif isinstance(text, str) and method == "translate" and args:
            _check_translate(text, args[0])
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


def _sized(value: Any) -> bool:
    return isinstance(value, str | list | tuple)


def _too_long(what: str, length: int) -> None:
    if length > MAX_OUTPUT_CHARS:
        raise SecurityError(f"{what} would build more than {MAX_OUTPUT_CHARS} characters")


def _check_replace(text: str, old: Any = "", new: Any = "", count: Any = -1) -> None:
    old, new = str(old), str(new)
    found = len(text) + 1 if not old else text.count(old)
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    _too_long("replace", len(text) + found * (len(new) - len(old)))


def _check_join(items: Iterable[Any], separator: str) -> list[Any]:
    """The items, read once, if joining them stays within MAX_OUTPUT_CHARS."""
    listed = list(items)
    _too_long("join", sum(len(str(item)) for item in listed) + len(separator) * max(len(listed) - 1, 0))
    return listed


def _check_translate(text: str, table: Any) -> None:
    longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1) if isinstance(table, dict) else 1
    _too_long("translate", len(text) * longest)


# What a filter's arguments are checked with: its context argument (an EvalContext, an Environment or None), its
# value and other arguments, its keyword arguments; it returns the arguments to call the filter with.
Check = Callable[[Any, list[Any], dict[str, Any]], list[Any]]


def _bounded(name: str, check: Check) -> Callable[..., Any]:
    """Jinja2's filter `name`, its arguments first checked (and possibly replaced) by `check`. The filter's context
    argument (pass_eval_context, pass_environment), if it takes one, is passed on as it is."""
    jinja_filter = FILTERS[name]
    passes = getattr(jinja_filter, "jinja_pass_arg", None)
    skip = 1 if passes is not None else 0

    def checked(*args: Any, **kwargs: Any) -> Any:
        context = args[0] if skip else None
        return jinja_filter(*args[:skip], *check(context, list(args[skip:]), kwargs), **kwargs)

    if passes is not None:
        checked.jinja_pass_arg = passes  # type: ignore[attr-defined]
    return checked


def _widths(name: str) -> Check:
    """No width over MAX_OUTPUT_CHARS among a filter's arguments after its value."""

    def check(context: Any, args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
        _check_widths(name, [*args[1:], *kwargs.values()])
        return args

    return check


def _printf(context: Any, args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
    """The `format` filter (printf style): no field width over MAX_OUTPUT_CHARS."""
    _check_printf(str(args[0]), tuple(args[1:]))
    return args


def _replace(context: Any, args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
    _check_replace(str(args[0]), *args[1:], **kwargs)
    return args


def _join(context: EvalContext, args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
    """What `join` joins is its items, or their `attribute`: read here, checked, and handed over as the items."""
    attribute = args.pop(2) if len(args) > 2 else kwargs.pop("attribute", None)
    items = args[0] if attribute is None else map(make_attrgetter(context.environment, attribute), args[0])
    args[0] = _check_join(items, str(args[1] if len(args) > 1 else kwargs.get("d", "")))
    return args


def _sum(context: Any, args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
    """`sum` of lists or strings builds one as long as all of them."""
    args[0] = items = list(args[0])
    if any(_sized(item) for item in items):
        _too_long("sum", sum(len(item) for item in items if _sized(item)))
    return args


def sandbox(autoescape: bool, finalize: Callable[[Any], Any] | None = None) -> SandboxedEnvironment:
    env = _Sandbox(undefined=StrictUndefined, autoescape=autoescape, finalize=finalize, keep_trailing_newline=True)
    env.globals["range"] = _bounded_range
    # The filters that build a string or a list as wide as a number they are given, or as long as their values
    # multiplied.
    env.filters.update({name: _bounded(name, _widths(name)) for name in ("center", "indent", "batch", "slice")})
    env.filters.update(
        {
            "format": _bounded("format", _printf),
            "replace": _bounded("replace", _replace),
            "join": _bounded("join", _join),
            "sum": _bounded("sum", _sum),
        }
    )
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
