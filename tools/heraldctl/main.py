"""heraldctl: apps, keys, templates, send, status, cancel, statistics, export, dead letters - over gRPC, with clear
output and exit codes."""

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
import yaml
from google.protobuf import duration_pb2, json_format
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import (
    admin_service_pb2_grpc,
    common_pb2,
    dead_letter_service_pb2,
    dead_letter_service_pb2_grpc,
    message_service_pb2_grpc,
    status_service_pb2,
    status_service_pb2_grpc,
)
from herald.v1 import message_service_pb2 as msg
from rich.console import Console
from rich.table import Table

from libs import categories
from tools.heraldctl.connection import TIMEOUT, Target, admin_stub, call, channel, fail, report

cli = typer.Typer(
    help="Operate herald: apps, keys, templates, send, status, cancel, statistics, export, dead letters.",
    no_args_is_help=True,
)
apps_cli = typer.Typer(help="Apps and their API keys (admin token).", no_args_is_help=True)
templates_cli = typer.Typer(help="Templates (admin token).", no_args_is_help=True)
cli.add_typer(apps_cli, name="apps")
dlq_cli = typer.Typer(help="Deliveries that failed after their last retry (admin token).", no_args_is_help=True)
cli.add_typer(templates_cli, name="templates")
cli.add_typer(dlq_cli, name="dlq")
out = Console()
target = Target.from_env(None, None, None)


@cli.callback()
def endpoints(
    intake: Annotated[str | None, typer.Option(help="intake host:port [env HERALD_INTAKE_ADDR]")] = None,
    adapters: Annotated[str | None, typer.Option(help="adapters host:port [env HERALD_ADAPTERS_ADDR]")] = None,
    feedback: Annotated[str | None, typer.Option(help="feedback host:port [env HERALD_FEEDBACK_ADDR]")] = None,
) -> None:
    global target
    target = Target.from_env(intake, adapters, feedback)


def _category(name: str) -> common_pb2.Category.ValueType:
    if name.lower() not in categories.BY_NAME:
        fail(f"unknown category '{name}'; use one of {', '.join(categories.BY_NAME)}", 2)
    return categories.BY_NAME[name.lower()]


def _optional_category(name: str) -> common_pb2.Category.ValueType:
    return _category(name) if name else common_pb2.CATEGORY_UNSPECIFIED


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            fail(f"{what} '{value}' is not KEY=VALUE", 2)
        pairs[key] = rest
    return pairs


def _when(ts: Any) -> str:
    return ts.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds") if ts.seconds else "-"


def _apps_table(apps: list[admin.App]) -> None:
    table = Table("app id", "name", "channels", "categories", "rate/s", "content kept", "disabled", "created")
    for app in apps:
        allowed = ", ".join(categories.name(c) for c in app.allowed_categories)
        table.add_row(
            app.app_id,
            app.name,
            ", ".join(app.allowed_channels) or "all",
            allowed or "all",
            f"{app.rate_limit_per_second:g}" if app.rate_limit_per_second else "no limit",
            f"{app.content_retention_days} days" if app.content_retention_days else "forever",
            "yes" if app.disabled else "",
            _when(app.create_time),
        )
    out.print(table)


@apps_cli.command("create")
def apps_create(
    name: str,
    channel: Annotated[list[str], typer.Option("--channel", help="a channel it may use (repeat); none = all")] = [],  # noqa: B006
    category: Annotated[list[str], typer.Option("--category", help="a category it may send (repeat); none = all")] = [],  # noqa: B006
    rate: Annotated[float, typer.Option(help="messages per second; 0 = no limit")] = 0.0,
    retention_days: Annotated[int, typer.Option(help="days its status records are kept; 0 = forever")] = 0,
) -> None:
    """Register an app and print its API key (shown only now)."""
    request = admin.CreateAppRequest(
        name=name,
        allowed_channels=channel,
        allowed_categories=[_category(c) for c in category],
        rate_limit_per_second=rate,
        content_retention_days=retention_days,
    )
    with admin_stub(target.intake) as stub:
        reply = call(stub.CreateApp, request, target.admin())
    _apps_table([reply.app])
    out.print(f"API key (shown once, store it now): [bold]{reply.api_key}[/bold]")


@apps_cli.command("list")
def apps_list() -> None:
    """Every app, page by page."""
    apps: list[admin.App] = []
    token = ""
    with admin_stub(target.intake) as stub:
        while True:
            page = call(stub.ListApps, admin.ListAppsRequest(page_size=200, page_token=token), target.admin())
            apps += page.apps
            if not (token := page.next_page_token):
                break
    _apps_table(apps)


@apps_cli.command("get")
def apps_get(app_id: str) -> None:
    with admin_stub(target.intake) as stub:
        _apps_table([call(stub.GetApp, admin.GetAppRequest(app_id=app_id), target.admin())])


@apps_cli.command("disable")
def apps_disable(app_id: str) -> None:
    """Refuse the app's calls from now on (messages already accepted are still delivered)."""
    with admin_stub(target.intake) as stub:
        _apps_table([call(stub.DisableApp, admin.DisableAppRequest(app_id=app_id), target.admin())])


@apps_cli.command("enable")
def apps_enable(app_id: str) -> None:
    with admin_stub(target.intake) as stub:
        _apps_table([call(stub.EnableApp, admin.EnableAppRequest(app_id=app_id), target.admin())])


@apps_cli.command("set-retention")
def apps_set_retention(app_id: str, days: int) -> None:
    """Keep the status records of the app's messages (and their content) N days (0 = forever); statistics stay."""
    request = admin.SetContentRetentionRequest(app_id=app_id, content_retention_days=days)
    with admin_stub(target.intake) as stub:
        _apps_table([call(stub.SetContentRetention, request, target.admin())])


@apps_cli.command("rotate-key")
def apps_rotate_key(
    app_id: str,
    grace_hours: Annotated[float, typer.Option(help="how long the current keys keep working")] = 24.0,
) -> None:
    """Issue a new key; the current ones keep working for the grace period."""
    grace = duration_pb2.Duration()
    grace.FromNanoseconds(int(grace_hours * 3600 * 1e9))
    with admin_stub(target.intake) as stub:
        reply = call(stub.RotateAppKey, admin.RotateAppKeyRequest(app_id=app_id, grace_period=grace), target.admin())
    out.print(f"new API key (shown once, store it now): [bold]{reply.api_key}[/bold]")
    out.print(f"previous keys stop working at {_when(reply.previous_keys_expire_time)}")


@templates_cli.command("apply")
def templates_apply(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Create or update the templates in a YAML file (one mapping, a list, or several documents)."""
    documents = [d for d in yaml.safe_load_all(file.read_text()) if d]
    specs = [s for d in documents for s in (d if isinstance(d, list) else [d])]
    with admin_stub(target.intake) as stub:
        for spec in specs:
            template = _template_from(spec)
            current = _get_or_none(stub, template.template_id)
            if current is None:
                created = call(stub.CreateTemplate, admin.CreateTemplateRequest(template=template), target.admin())
                out.print(f"{created.template_id}: created version {created.version}")
            elif _same(current, template):
                out.print(f"{template.template_id}: unchanged (version {current.version})")
            else:
                updated = call(stub.UpdateTemplate, admin.UpdateTemplateRequest(template=template), target.admin())
                out.print(f"{updated.template_id}: updated to version {updated.version}")


@templates_cli.command("list")
def templates_list(archived: Annotated[bool, typer.Option(help="include archived templates")] = False) -> None:
    table = Table("template id", "version", "category", "channels", "variables", "archived")
    token = ""
    with admin_stub(target.intake) as stub:
        while True:
            request = admin.ListTemplatesRequest(page_size=200, page_token=token, show_archived=archived)
            page = call(stub.ListTemplates, request, target.admin())
            for t in page.templates:
                table.add_row(
                    t.template_id,
                    str(t.version),
                    categories.name(t.category),
                    ", ".join(dict.fromkeys(c.channel for c in t.contents)),
                    ", ".join(t.variables),
                    _when(t.archive_time) if t.HasField("archive_time") else "",
                )
            if not (token := page.next_page_token):
                break
    out.print(table)


@templates_cli.command("get")
def templates_get(template_id: str, version: Annotated[int, typer.Option(help="0 = latest")] = 0) -> None:
    """Print a template as YAML, ready for `templates apply`."""
    with admin_stub(target.intake) as stub:
        template = call(
            stub.GetTemplate, admin.GetTemplateRequest(template_id=template_id, version=version), target.admin()
        )
    spec = json_format.MessageToDict(template, preserving_proto_field_name=True)
    spec["category"] = categories.name(template.category)
    out.print(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), end="")


@templates_cli.command("archive")
def templates_archive(template_id: str) -> None:
    with admin_stub(target.intake) as stub:
        call(stub.ArchiveTemplate, admin.ArchiveTemplateRequest(template_id=template_id), target.admin())
    out.print(f"{template_id}: archived")


@templates_cli.command("preview")
def templates_preview(
    template_id: str,
    var: Annotated[list[str], typer.Option("--var", help="KEY=VALUE (repeat)")] = [],  # noqa: B006
    locale: str = "",
) -> None:
    request = admin.PreviewTemplateRequest(template_id=template_id, variables=_pairs(var, "--var"), locale=locale)
    with admin_stub(target.intake) as stub:
        reply = call(stub.PreviewTemplate, request, target.admin())
    for content in reply.contents:
        out.rule(f"{content.channel} ({content.locale or 'default locale'})")
        for part in ("subject", "body", "html_body"):
            if text := getattr(content, part):
                out.print(f"[bold]{part}[/bold]: {text}")
        for key, value in content.data.items():
            out.print(f"[bold]data[{key}][/bold]: {value}")


@cli.command("send")
def send(
    template_id: str,
    to: Annotated[list[str], typer.Option("--to", help="CHANNEL=ADDRESS for one recipient (repeat)")] = [],  # noqa: B006
    user: Annotated[str, typer.Option(help="the recipient's user id in the directory")] = "",
    var: Annotated[list[str], typer.Option("--var", help="KEY=VALUE (repeat)")] = [],  # noqa: B006
    send_at: Annotated[str, typer.Option(help="ISO 8601 time to send at")] = "",
    idempotency_key: str = "",
    dry_run: bool = False,
) -> None:
    """Send a message to one recipient with the app key in HERALD_API_KEY."""
    request = msg.SendRequest(
        template_id=template_id,
        recipients=[msg.Recipient(user_id=user, addresses=_pairs(to, "--to"))],
        variables=_pairs(var, "--var"),
        idempotency_key=idempotency_key,
        dry_run=dry_run,
    )
    if send_at:
        try:
            request.send_at.FromDatetime(datetime.fromisoformat(send_at).astimezone(UTC))
        except ValueError:
            fail(f"--send-at '{send_at}' is not an ISO 8601 time", 2)
    with channel(target.intake) as ch:
        reply = call(message_service_pb2_grpc.MessageServiceStub(ch).Send, request, target.app())
    if dry_run:
        out.print("dry run: valid and renders; nothing was sent")
    else:
        out.print(reply.message_id + (" (duplicate: sent before with this key)" if reply.duplicate else ""))


@cli.command("status")
def status(
    message_id: str,
    history: bool = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    state: Annotated[str, typer.Option(help="only deliveries now in this state, e.g. failed")] = "",
    user: Annotated[str, typer.Option(help="only this user's deliveries")] = "",
    channel_name: Annotated[str, typer.Option("--channel", help="only this channel's deliveries")] = "",
    page_size: Annotated[int, typer.Option(help="deliveries per page (at most 1000)")] = 100,
    page_token: Annotated[str, typer.Option(help="the page a previous call pointed to")] = "",
    every_page: Annotated[bool, typer.Option("--all", help="every page, not only the first")] = False,
) -> None:
    """What happened to a message: how many deliveries are in each state, then the deliveries, their state and
    why, a page at a time."""
    request = status_service_pb2.GetMessageRequest(
        message_id=message_id,
        state=_delivery_state(state) if state else common_pb2.DELIVERY_STATE_UNSPECIFIED,
        user_id=user,
        channel=channel_name,
        page_size=page_size,
        page_token=page_token,
    )
    with channel(target.feedback) as ch:
        stub = status_service_pb2_grpc.StatusServiceStub(ch)
        message = call(stub.GetMessage, request, target.app())
        pages = [message]
        while every_page and pages[-1].next_page_token:
            request.page_token = pages[-1].next_page_token
            pages.append(call(stub.GetMessage, request, target.app()))
    if as_json:
        for page in pages:
            out.print_json(json.dumps(json_format.MessageToDict(page, preserving_proto_field_name=True)))
        return
    template = f"template {message.template_id} v{message.template_version}"
    out.print(f"{message.message_id}  {template}  sent {_when(message.create_time)}")
    counts = ", ".join(f"{_state_name(c.state).lower()} {c.count:,}" for c in message.delivery_state_counts)
    noun = "delivery" if message.delivery_count == 1 else "deliveries"
    out.print(f"{message.delivery_count:,} {noun}" + (f": {counts}" if counts else ""))
    table = Table("delivery", "user", "channel", "state", "attempts", "reason", "updated")
    for d in (d for page in pages for d in page.deliveries):
        table.add_row(
            d.delivery_id, d.user_id, d.channel, _state_name(d.state), str(d.attempts), d.reason, _when(d.update_time)
        )
        for h in d.history if history else []:
            table.add_row(
                "", "", "", f"  {_state_name(h.state).lower()}", str(h.attempt), h.reason, _when(h.occur_time)
            )
    out.print(table)
    if token := pages[-1].next_page_token:
        out.print(f"more: --page-token {token} (or --all)")


def _state_name(state: common_pb2.DeliveryState.ValueType) -> str:
    return common_pb2.DeliveryState.Name(state).removeprefix("DELIVERY_STATE_")


def _delivery_state(name: str) -> common_pb2.DeliveryState.ValueType:
    states = [n.removeprefix("DELIVERY_STATE_").lower() for n in common_pb2.DeliveryState.keys()[1:]]
    if name.lower() not in states:
        fail(f"--state '{name}': use one of {', '.join(states)}", 2)
    return common_pb2.DeliveryState.Value(f"DELIVERY_STATE_{name.upper()}")


@cli.command("cancel")
def cancel(message_id: str) -> None:
    """Withdraw a message that has not been dispatched yet."""
    with channel(target.intake) as ch:
        call(
            message_service_pb2_grpc.MessageServiceStub(ch).CancelMessage,
            msg.CancelMessageRequest(message_id=message_id),
            target.app(),
        )
    out.print(f"{message_id}: cancelled")


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
Since = Annotated[str, typer.Option("--from", help="ISO 8601 start [default: 7 days ago]")]
Until = Annotated[str, typer.Option("--to", help="ISO 8601 end [default: now]")]


@cli.command("stats")
def stats(
    since: Since = "",
    until: Until = "",
    interval: Annotated[str, typer.Option(help="total, hour or day (UTC)")] = "total",
    by: Annotated[list[str], typer.Option("--by", help="app, channel, template or provider (repeat)")] = [],  # noqa: B006
    app_id: Annotated[str, typer.Option("--app", help="only this app (admin token)")] = "",
    channel_name: Annotated[str, typer.Option("--channel", help="only this channel")] = "",
    template_id: Annotated[str, typer.Option("--template", help="only this template")] = "",
) -> None:
    """Sends, reach, reads, suppressions, latency and cost: the app's with HERALD_API_KEY, else every app's."""
    if interval not in STATS_INTERVALS:
        fail(f"--interval '{interval}': use one of {', '.join(STATS_INTERVALS)}", 2)
    if unknown := [b for b in by if b not in STATS_DIMENSIONS]:
        fail(f"--by '{unknown[0]}': use one of {', '.join(STATS_DIMENSIONS)}", 2)
    request = status_service_pb2.GetStatsRequest(
        interval=STATS_INTERVALS[interval],
        group_by=[STATS_DIMENSIONS[b][0] for b in by],
        app_id=app_id,
        channel=channel_name,
        template_id=template_id,
    )
    _time_range(request, since, until)
    with channel(target.feedback) as ch:
        reply = call(status_service_pb2_grpc.StatusServiceStub(ch).GetStats, request, target.app_or_admin())
    groups = list(dict.fromkeys(by))
    table = Table("from", *groups, "sent", "delivered", "read", "failed", "suppressed", "rates", "send p50/p99", "cost")
    for row in reply.rows:
        suppressed = ", ".join(f"{reason} {n}" for reason, n in sorted(row.suppressed_by_reason.items()))
        table.add_row(
            _when(row.bucket_start_time),
            *(str(getattr(row, STATS_DIMENSIONS[g][1])) for g in groups),
            str(row.sent),
            str(row.delivered),
            str(row.read),
            str(row.failed),
            f"{row.suppressed}" + (f" ({suppressed})" if suppressed else ""),
            f"{row.delivery_rate:.0%} / {row.read_rate:.0%}",
            _latency(row.send_latency),
            ", ".join(f"{c.amount_micros / 1e6:,.4f} {c.currency_code}" for c in row.costs),
        )
    out.print(table)


@cli.command("export")
def export(
    since: Since = "",
    until: Until = "",
    format_name: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
    app_id: Annotated[str, typer.Option("--app", help="only this app (admin token)")] = "",
    to_file: Annotated[Path | None, typer.Option("--out", help="write here [default: stdout, csv only]")] = None,
) -> None:
    """Raw status events of a time range, as herald streams them, for the data platform."""
    if format_name not in EXPORT_FORMATS:
        fail(f"--format '{format_name}': use csv or parquet", 2)
    if format_name == "parquet" and to_file is None:
        fail("Parquet is binary: give --out FILE", 2)
    request = status_service_pb2.ExportEventsRequest(format=EXPORT_FORMATS[format_name], app_id=app_id)
    _time_range(request, since, until)
    sink = to_file.open("wb") if to_file else sys.stdout.buffer
    try:
        with channel(target.feedback) as ch:
            stream = status_service_pb2_grpc.StatusServiceStub(ch).ExportEvents(request, metadata=target.app_or_admin())
            try:
                for chunk in stream:
                    sink.write(chunk.data)
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
        fail(f"--from/--to: {e}", 2)
    request.start_time.FromDatetime(start)
    request.end_time.FromDatetime(end)


def _latency(latency: status_service_pb2.LatencyPercentiles) -> str:
    if not latency.count:
        return "-"
    p50, p99 = (d.ToTimedelta().total_seconds() for d in (latency.p50, latency.p99))
    return f"{p50:.2f}s / {p99:.2f}s"


@dlq_cli.command("list")
def dlq_list(
    channel_name: Annotated[str, typer.Option("--channel", help="only this channel")] = "",
    category: Annotated[str, typer.Option(help="only this category")] = "",
    limit: Annotated[int, typer.Option(help="at most this many, oldest first")] = 100,
) -> None:
    """Dead letters: which delivery, how many attempts, the provider's last error."""
    request = dead_letter_service_pb2.ListDeadLettersRequest(
        channel=channel_name, category=_optional_category(category), page_size=limit
    )
    with channel(target.adapters) as ch:
        reply = call(dead_letter_service_pb2_grpc.DeadLetterServiceStub(ch).ListDeadLetters, request, target.admin())
    table = Table("seq", "delivery", "category", "channel", "attempts", "provider", "reason", "died")
    for d in reply.dead_letters:
        table.add_row(
            str(d.sequence),
            d.delivery_id,
            categories.name(d.category),
            d.channel,
            str(d.attempts),
            d.provider,
            d.reason,
            _when(d.dead_time),
        )
    out.print(table)
    if reply.next_page_token:
        out.print(f"(more after seq {reply.next_page_token})")


@dlq_cli.command("replay")
def dlq_replay(
    sequences: Annotated[list[int] | None, typer.Argument(help="dead letters to replay; none = every match")] = None,
    channel_name: Annotated[str, typer.Option("--channel", help="only this channel")] = "",
    category: Annotated[str, typer.Option(help="only this category")] = "",
) -> None:
    """Put dead letters back on their delivery subject, with a fresh retry budget."""
    request = dead_letter_service_pb2.ReplayDeadLettersRequest(
        sequences=sequences or [], channel=channel_name, category=_optional_category(category)
    )
    with channel(target.adapters) as ch:
        reply = call(dead_letter_service_pb2_grpc.DeadLetterServiceStub(ch).ReplayDeadLetters, request, target.admin())
    out.print(f"replayed {reply.replayed}")


@dlq_cli.command("unprocessed")
def dlq_unprocessed(
    consumer: Annotated[str, typer.Option(help="only this consumer's, e.g. router-notification")] = "",
    limit: Annotated[int, typer.Option(help="at most this many, oldest first")] = 100,
) -> None:
    """Messages a stage could not handle after its last retry: which consumer, from which subject, the last error."""
    request = dead_letter_service_pb2.ListUnprocessedMessagesRequest(consumer=consumer, page_size=limit)
    with channel(target.adapters) as ch:
        stub = dead_letter_service_pb2_grpc.DeadLetterServiceStub(ch)
        reply = call(stub.ListUnprocessedMessages, request, target.admin())
    table = Table("seq", "consumer", "subject", "deliveries", "bytes", "reason", "died")
    for m in reply.unprocessed_messages:
        table.add_row(
            str(m.sequence), m.consumer, m.subject, str(m.deliveries), str(m.size_bytes), m.reason, _when(m.dead_time)
        )
    out.print(table)
    if reply.next_page_token:
        out.print(f"(more after seq {reply.next_page_token})")


@dlq_cli.command("replay-unprocessed")
def dlq_replay_unprocessed(
    sequences: Annotated[list[int] | None, typer.Argument(help="messages to replay; none = all of --consumer")] = None,
    consumer: Annotated[str, typer.Option(help="only this consumer's")] = "",
) -> None:
    """Put unprocessed messages back on their subject, with a fresh retry budget, once the cause is fixed."""
    request = dead_letter_service_pb2.ReplayUnprocessedMessagesRequest(sequences=sequences or [], consumer=consumer)
    with channel(target.adapters) as ch:
        stub = dead_letter_service_pb2_grpc.DeadLetterServiceStub(ch)
        reply = call(stub.ReplayUnprocessedMessages, request, target.admin())
    out.print(f"replayed {reply.replayed}")


def _template_from(spec: dict[str, Any]) -> admin.Template:
    spec = dict(spec)
    category = _category(str(spec.pop("category", "")))
    try:
        template = json_format.ParseDict(spec, admin.Template())
    except json_format.ParseError as e:
        fail(f"template {spec.get('template_id', '?')}: {e}", 2)
    template.category = category
    return template


def _get_or_none(stub: admin_service_pb2_grpc.AdminServiceStub, template_id: str) -> admin.Template | None:
    request = admin.GetTemplateRequest(template_id=template_id)
    try:
        template: admin.Template = stub.GetTemplate(request, metadata=target.admin(), timeout=TIMEOUT)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return None
        report(e)
    return template


def _same(current: admin.Template, wanted: admin.Template) -> bool:
    return (
        current.category == wanted.category
        and current.description == wanted.description
        and list(current.contents) == list(wanted.contents)
    )


def main() -> None:
    cli()
