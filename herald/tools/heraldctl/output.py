"""How heraldctl prints: tables that never cut an id, JSON for scripts, and progress on stderr.

Data goes to stdout, everything else (progress, errors) to stderr, so `heraldctl export > events.csv` and
`heraldctl ... --json | jq` get nothing but the data.
"""

import json
from collections.abc import Iterable
from datetime import UTC
from typing import Any

import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

out = Console()
# Wide enough to measure any cell's natural width without the terminal's limit.
_UNLIMITED = 1_000_000


def show(table: Table) -> None:
    """Print a table whole, however narrow the terminal (or 80 columns when stdout is not one).

    Rich fits a table to the width by cutting cells ("app_01JD…"), ids included. Here no cell is ever narrower
    than its longest word: when the natural layout does not fit, free text wraps at spaces first, and when even
    that does not fit, the table is printed wider than the terminal rather than cut - ids and times have no spaces,
    so they always appear in full, on one line, where a script or a reader can copy them."""
    options = out.options.update_width(_UNLIMITED)
    shortest, natural = [], []
    for column in table.columns:
        sizes = [Measurement.get(out, options, cell) for cell in (column.header, *column.cells)]
        shortest.append(max(size.minimum for size in sizes))
        natural.append(max(size.maximum for size in sizes))
    frame = Measurement.get(out, options, table).maximum - sum(natural)  # borders and padding
    if sum(natural) + frame > out.width:
        # Each column gets its longest word, and the room left goes to the columns that wrap, by what they lack.
        room = max(out.width - frame, sum(shortest))
        lacking = [n - s for n, s in zip(natural, shortest, strict=True)]
        spare, wanted = room - sum(shortest), sum(lacking)
        for column, least, lack in zip(table.columns, shortest, lacking, strict=True):
            column.width = least + (spare * lack // wanted if wanted else 0)
        table.width = sum(column.width or 0 for column in table.columns) + frame
    out.print(table, crop=False)


def as_dict(message: Message) -> dict[str, Any]:
    """A message as herald's JSON: proto field names, enums by name, every field (defaults included)."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def print_json(data: Message | dict[str, Any]) -> None:
    """One JSON document on stdout, nothing else: what `--json` prints."""
    typer.echo(json.dumps(as_dict(data) if isinstance(data, Message) else data, indent=2, ensure_ascii=False))


def when(ts: Timestamp) -> str:
    """A time as ISO 8601 to the second, UTC; "-" for one never set."""
    return ts.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds") if ts.seconds else "-"


def listing(field: str, messages: Iterable[Message]) -> dict[str, Any]:
    """Every page's items as one document, e.g. {"apps": [...]}."""
    return {field: [as_dict(m) for m in messages]}


class CsvRows:
    """Counts the records of a CSV file as it streams by, chunk by chunk: line breaks outside quoted fields (a
    reason may hold one), the header excluded."""

    def __init__(self) -> None:
        self._lines = 0
        self._quoted = False

    def add(self, data: bytes) -> None:
        parts = data.split(b'"')
        # Even parts lie outside quotes when the chunk starts outside; a doubled quote ("") toggles twice.
        self._lines += sum(part.count(b"\n") for part in parts[1 if self._quoted else 0 :: 2])
        self._quoted ^= len(parts) % 2 == 0

    @property
    def rows(self) -> int:
        return max(self._lines - 1, 0)
