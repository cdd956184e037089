"""Templates are written outside the herald team: they render strictly and can never reach Python internals."""

import pytest

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


def test_output_size_is_bounded() -> None:
    with pytest.raises(templating.TemplateError, match="limit"):
        templating.render("{% for i in range(100000) %}xxxxxxxxxx{% endfor %}", {})


def test_syntax_error_says_where() -> None:
    with pytest.raises(templating.TemplateError, match="line 1"):
        templating.check_syntax("{{ unclosed")


def test_variables_a_template_needs() -> None:
    assert templating.variables("{{ a }} {% if b %}{{ c | upper }}{% endif %}") == {"a", "b", "c"}
