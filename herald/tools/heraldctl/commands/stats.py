"""`heraldctl stats` and `export`: what happened across messages over a time range - the counts and rates, or
the raw status events for the data platform. The app's own with HERALD_API_KEY, else every app's."""

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import grpc
import typer
from herald.v1 import status_service_pb2, status_service_pb2_grpc
from rich.table import Table

from herald.tools.heraldctl.arguments import Json
from herald.tools.heraldctl.connection import USAGE, Target, call, err, fail, report
from herald.tools.heraldctl.output import CsvRows, print_json, show, when

# Top-level commands: main.py merges them into heraldctl itself.
cli = typer.Typer()
STATS_INTERVALS = {
    "total": status_service_pb2.STATS_INTERVAL_UNSPECIFIED,
    "hour": status_service_pb2.STATS_INTERVAL_HOUR,
    "day": status_service_pb2.STATS_INTERVAL_DAY,
}
# --by name -> (dimension, the StatsRow field it fills)
STATS_DIMENSIONS = {
    "app": (status_service_pb2.STATS_DIMENSION_APP, "app_id"),
    "channel": (status_service_pb2.STATS_DIMENSION_CHANNEL, "channel"),
    "template": (status_service_pb2.STATS_DIMENSION_TEMPLATE, "template_id"),
    "provider": (status_service_pb2.STATS_DIMENSION_PROVIDER, "provider"),
}
EXPORT_FORMATS = {"csv": status_service_pb2.EXPORT_FORMAT_CSV, "parquet": status_service_pb2.EXPORT_FORMAT_PARQUET}
Since = Annotated[str, typer.Option("--from", help="ISO 8601 start", show_default="7 days ago")]
Until = Annotated[str, typer.Option("--to", help="ISO 8601 end", show_default="now")]


@cli.command("stats")
def stats(
    ctx: typer.Context,
    since: Since = "",
    until: Until = "",
    interval: Annotated[str, typer.Option(help="total, hour or day (UTC)")] = "total",
    by: Annotated[list[str], typer.Option("--by", help="app, channel, template or provider (repeat)")] = [],  # noqa: B006
    app_id: Annotated[str, typer.Option("--app", help="only this app (admin token)")] = "",
    channel_name: Annotated[str, typer.Option("--channel", help="only this channel")] = "",
    template_id: Annotated[str, typer.Option("--template", help="only this template")] = "",
    as_json: Json = False,
) -> None:
    """Sends, reach, reads, suppressions, latency and cost: the app's with HERALD_API_KEY, else every app's."""
    target: Target = ctx.obj
    if interval not in STATS_INTERVALS:
        fail(f"--interval '{interval}': use one of {', '.join(STATS_INTERVALS)}", USAGE)
    if unknown := [b for b in by if b not in STATS_DIMENSIONS]:
        fail(f"--by '{unknown[0]}': use one of {', '.join(STATS_DIMENSIONS)}", USAGE)
    request = status_service_pb2.GetStatsRequest(
        interval=STATS_INTERVALS[interval],
        group_by=[STATS_DIMENSIONS[b][0] for b in by],
        app_id=app_id,
        channel=channel_name,
        template_id=template_id,
    )
    _time_range(request, since, until)
    with target.channel(target.feedback) as ch:
        reply = call(status_service_pb2_grpc.StatusServiceStub(ch).GetStats, request, target.app_or_admin())
    if as_json:
        print_json(reply)
        return
    groups = list(dict.fromkeys(by))
    table = Table(
        "from", *groups, "sent", "delivered", "read", "failed", "suppressed", "rates d/r/o/c", "send p50/p99", "cost"
    )
    for row in reply.rows:
        suppressed = ", ".join(f"{reason} {n}" for reason, n in sorted(row.suppressed_by_reason.items()))
        table.add_row(
            when(row.bucket_start_time),
            *(str(getattr(row, STATS_DIMENSIONS[g][1])) for g in groups),
            str(row.sent),
            str(row.delivered),
            str(row.read),
            str(row.failed),
            f"{row.suppressed}" + (f" ({suppressed})" if suppressed else ""),
            f"{row.delivery_rate:.0%} / {row.read_rate:.0%} / {row.open_rate:.0%} / {row.click_rate:.0%}",
            _latency(row.send_latency),
            ", ".join(f"{c.amount_micros / 1e6:,.4f} {c.currency_code}" for c in row.costs),
        )
    show(table)


@cli.command("export")
def export(
    ctx: typer.Context,
    since: Since = "",
    until: Until = "",
    format_name: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
    app_id: Annotated[str, typer.Option("--app", help="only this app (admin token)")] = "",
    to_file: Annotated[Path | None, typer.Option("--out", help="write here", show_default="stdout, csv only")] = None,
) -> None:
    """Raw status events of a time range, as herald streams them, for the data platform.

    Progress goes to stderr, a line per chunk herald sends, so stdout holds only the file."""
    target: Target = ctx.obj
    if format_name not in EXPORT_FORMATS:
        fail(f"--format '{format_name}': use csv or parquet", USAGE)
    if format_name == "parquet" and to_file is None:
        fail("Parquet is binary: give --out FILE", USAGE)
    request = status_service_pb2.ExportEventsRequest(format=EXPORT_FORMATS[format_name], app_id=app_id)
    _time_range(request, since, until)
    sink = to_file.open("wb") if to_file else sys.stdout.buffer
    rows, written = CsvRows(), 0
    try:
        with target.channel(target.feedback) as ch:
            stream = status_service_pb2_grpc.StatusServiceStub(ch).ExportEvents(request, metadata=target.app_or_admin())
            try:
                for chunk in stream:
                    sink.write(chunk.data)
                    rows.add(chunk.data)
                    written += len(chunk.data)
                    if chunk.data:
                        sink.flush()
                        done = f"{rows.rows:,} rows" if format_name == "csv" else f"{written:,} bytes"
                        err.print(f"wrote {done}" + (f" to {to_file}" if to_file else ""), soft_wrap=True)
            except grpc.RpcError as e:
                report(e)
    finally:
        if to_file:
            sink.close()


def _time_range(
    request: status_service_pb2.GetStatsRequest | status_service_pb2.ExportEventsRequest, since: str, until: str
) -> None:
    try:
        end = datetime.fromisoformat(until).astimezone(UTC) if until else datetime.now(UTC)
        start = datetime.fromisoformat(since).astimezone(UTC) if since else end - timedelta(days=7)
    except ValueError as e:
        fail(f"--from/--to: {e}", USAGE)
    request.start_time.FromDatetime(start)
    request.end_time.FromDatetime(end)


def _latency(latency: status_service_pb2.LatencyPercentiles) -> str:
    if not latency.count:
        return "-"
    p50, p99 = (d.ToTimedelta().total_seconds() for d in (latency.p50, latency.p99))
    return f"{p50:.2f}s / {p99:.2f}s"
