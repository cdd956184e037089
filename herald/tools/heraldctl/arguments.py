"""What the operator types that herald's requests spell otherwise: categories by name, KEY=VALUE pairs, --json.

A mistake here is bad usage (exit 2), reported before any call."""

from typing import Annotated

import typer
from herald.v1 import common_pb2

from herald.libs import categories
from herald.tools.heraldctl.connection import USAGE, fail

Json = Annotated[bool, typer.Option("--json", help="print herald's answer as JSON (proto field names), for scripts")]


def parse_category(name: str) -> common_pb2.Category.ValueType:
    if name.lower() not in categories.BY_NAME:
        fail(f"unknown category '{name}'; use one of {', '.join(categories.BY_NAME)}", USAGE)
    return categories.BY_NAME[name.lower()]


def parse_optional_category(name: str) -> common_pb2.Category.ValueType:
    return parse_category(name) if name else common_pb2.CATEGORY_UNSPECIFIED


def parse_pairs(values: list[str], what: str) -> dict[str, str]:
    found = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            fail(f"{what} '{value}' is not KEY=VALUE", USAGE)
        found[key] = rest
    return found
