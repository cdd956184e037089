"""`heraldctl apps`: register apps, page through them, switch them off and on, their retention and API keys."""

from typing import Annotated

import typer
from google.protobuf import duration_pb2
from herald.v1 import admin_service_pb2 as admin
from rich.table import Table

from herald.libs import categories
from herald.tools.heraldctl.arguments import Json, parse_category
from herald.tools.heraldctl.connection import Target, call
from herald.tools.heraldctl.output import listing, out, print_json, show, when
from herald.tools.heraldctl.paging import pages

cli = typer.Typer(name="apps", help="Apps and their API keys (admin token).", no_args_is_help=True)
AppId = Annotated[str, typer.Argument(help="the app's id, e.g. app_01JD3...")]


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
            when(app.create_time),
        )
    show(table)


@cli.command("create")
def apps_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="a name people recognise, e.g. checkout")],
    channel: Annotated[list[str], typer.Option("--channel", help="a channel it may use (repeat); none = all")] = [],  # noqa: B006
    category: Annotated[list[str], typer.Option("--category", help="a category it may send (repeat); none = all")] = [],  # noqa: B006
    rate: Annotated[float, typer.Option(help="messages per second; 0 = no limit")] = 0.0,
    retention_days: Annotated[int, typer.Option(help="days its status records are kept; 0 = forever")] = 0,
) -> None:
    """Register an app and print its API key (shown only now)."""
    target: Target = ctx.obj
    request = admin.CreateAppRequest(
        name=name,
        allowed_channels=channel,
        allowed_categories=[parse_category(c) for c in category],
        rate_limit_per_second=rate,
        content_retention_days=retention_days,
    )
    with target.admin_stub() as stub:
        reply = call(stub.CreateApp, request, target.admin())
    _apps_table([reply.app])
    out.print(f"API key (shown once, store it now): [bold]{reply.api_key}[/bold]", soft_wrap=True)


@cli.command("list")
def apps_list(ctx: typer.Context, as_json: Json = False) -> None:
    """Every app, page by page."""
    target: Target = ctx.obj
    with target.admin_stub() as stub:
        apps = [
            app
            for page in pages(
                lambda token: call(
                    stub.ListApps, admin.ListAppsRequest(page_size=200, page_token=token), target.admin()
                )
            )
            for app in page.apps
        ]
    if as_json:
        print_json(listing("apps", apps))
    else:
        _apps_table(apps)


@cli.command("get")
def apps_get(ctx: typer.Context, app_id: AppId, as_json: Json = False) -> None:
    """One app: its channels, categories, rate limit, retention, whether it is disabled."""
    target: Target = ctx.obj
    with target.admin_stub() as stub:
        app = call(stub.GetApp, admin.GetAppRequest(app_id=app_id), target.admin())
    if as_json:
        print_json(app)
    else:
        _apps_table([app])


@cli.command("disable")
def apps_disable(ctx: typer.Context, app_id: AppId) -> None:
    """Refuse the app's calls from now on (messages already accepted are still delivered)."""
    target: Target = ctx.obj
    with target.admin_stub() as stub:
        _apps_table([call(stub.DisableApp, admin.DisableAppRequest(app_id=app_id), target.admin())])


@cli.command("enable")
def apps_enable(ctx: typer.Context, app_id: AppId) -> None:
    """Accept the app's calls again."""
    target: Target = ctx.obj
    with target.admin_stub() as stub:
        _apps_table([call(stub.EnableApp, admin.EnableAppRequest(app_id=app_id), target.admin())])


@cli.command("set-retention")
def apps_set_retention(
    ctx: typer.Context, app_id: AppId, days: Annotated[int, typer.Argument(help="days to keep them; 0 = forever")]
) -> None:
    """Keep the status records of the app's messages (and their content) N days (0 = forever); statistics stay."""
    target: Target = ctx.obj
    request = admin.SetContentRetentionRequest(app_id=app_id, content_retention_days=days)
    with target.admin_stub() as stub:
        _apps_table([call(stub.SetContentRetention, request, target.admin())])


@cli.command("rotate-key")
def apps_rotate_key(
    ctx: typer.Context,
    app_id: AppId,
    grace_hours: Annotated[float, typer.Option(help="how long the current keys keep working")] = 24.0,
) -> None:
    """Issue a new key; the current ones keep working for the grace period."""
    target: Target = ctx.obj
    grace = duration_pb2.Duration()
    grace.FromNanoseconds(int(grace_hours * 3600 * 1e9))
    with target.admin_stub() as stub:
        reply = call(stub.RotateAppKey, admin.RotateAppKeyRequest(app_id=app_id, grace_period=grace), target.admin())
    out.print(f"new API key (shown once, store it now): [bold]{reply.api_key}[/bold]", soft_wrap=True)
    out.print(f"previous keys stop working at {when(reply.previous_keys_expire_time)}")
