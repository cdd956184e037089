"""Sortable ids: a ULID after a short type prefix ("msg_01JD3..."), so ids order by creation time."""

from ulid import ULID


def new_id(prefix: str) -> str:
    return f"{prefix}_{ULID()}"
