"""heraldctl: apps, keys, templates, provider accounts, send, status, cancel, statistics, export, dead letters -
over gRPC, with clear output and exit codes."""

import dataclasses
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from importlib.metadata import entry_points, version
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
    provider_service_pb2_grpc,
    status_service_pb2,
    status_service_pb2_grpc,
    topic_service_pb2,
    topic_service_pb2_grpc,
)
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as prov
from rich.table import Table

from libs import categories, storable
from libs.tls import client_from_env
from tools.heraldctl.connection import (
    DEFAULT_ADAPTERS,
    DEFAULT_FEEDBACK,
    DEFAULT_INTAKE,
    DEFAULT_ROUTER,
    TIMEOUT,
    USAGE,
    Target,
    call,
    err,
    fail,
    report,
)
from tools.heraldctl.output import CsvRows, listing, out, print_json, show

cli = typer.Typer(
    help="Operate herald: apps, keys, templates, provider accounts, send, status, cancel, statistics, export, dead "
    "letters.\n\nCredentials come from the environment, never from options: admin commands use HERALD_ADMIN_TOKEN "
    "(default: the file `make up` writes, $HERALD_DATA_DIR/admin-token, HERALD_DATA_DIR defaulting to .herald); "
    "an app's own calls (send, status, cancel, and stats and export when it is set) use HERALD_API_KEY.\n\n"
    "Exit codes: 0 done, 1 herald refused the request, 2 bad usage, 3 herald unreachable.",
    no_args_is_help=True,
)
apps_cli = typer.Typer(help="Apps and their API keys (admin token).", no_args_is_help=True)
templates_cli = typer.Typer(help="Templates (admin token).", no_args_is_help=True)
providers_cli = typer.Typer(
    help="Provider accounts herald delivers through (admin token; served by the adapters). An account names the "
    "environment variables of the adapters that hold its secrets (HERALD_PROVIDER_*), never the secrets.",
    no_args_is_help=True,
)
topics_cli = typer.Typer(help="The app's topics and their subscribers (HERALD_API_KEY).", no_args_is_help=True)
dlq_cli = typer.Typer(help="Deliveries that failed after their last retry (admin token).", no_args_is_help=True)
cli.add_typer(apps_cli, name="apps")
cli.add_typer(templates_cli, name="templates")
cli.add_typer(providers_cli, name="providers")
cli.add_typer(topics_cli, name="topics")
cli.add_typer(dlq_cli, name="dlq")
target = Target.from_env(None, None, None, None)

Json = Annotated[bool, typer.Option("--json", help="print herald's answer as JSON (proto field names), for scripts")]


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"heraldctl {version('herald')}")
        raise typer.Exit()


@cli.callback()
def root(
    intake: Annotated[
        str, typer.Option(envvar="HERALD_INTAKE_ADDR", help="intake's host:port (apps, templates, send, cancel)")
    ] = DEFAULT_INTAKE,
    router: Annotated[str, typer.Option(envvar="HERALD_ROUTER_ADDR", help="the router's host:port (topics)")] = (
        DEFAULT_ROUTER
    ),
    adapters: Annotated[
        str, typer.Option(envvar="HERALD_ADAPTERS_ADDR", help="the adapters' host:port (providers, dlq)")
    ] = DEFAULT_ADAPTERS,
    feedback: Annotated[
        str, typer.Option(envvar="HERALD_FEEDBACK_ADDR", help="feedback's host:port (status, stats, export)")
    ] = DEFAULT_FEEDBACK,
    ca_file: Annotated[
        str, typer.Option(envvar="HERALD_TLS_CA_FILE", help="PEM CA herald's certificates are signed by: speak TLS")
    ] = "",
    cert_file: Annotated[
        str, typer.Option(envvar="HERALD_TLS_CLIENT_CERT_FILE", help="PEM certificate to present (mutual TLS)")
    ] = "",
    key_file: Annotated[str, typer.Option(envvar="HERALD_TLS_CLIENT_KEY_FILE", help="the PEM key of --cert-file")] = "",
    show_version: Annotated[
        bool,
        typer.Option("--version", help="print heraldctl's version and exit", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    endpoints(intake, router, adapters, feedback)
    trust(ca_file, cert_file, key_file)


def endpoints(intake: str, router: str, adapters: str, feedback: str) -> None:
    """Where herald's services listen: the endpoint options of every command."""
    global target
    target = Target.from_env(intake, router, adapters, feedback)


def trust(ca_file: str, cert_file: str, key_file: str) -> None:
    """TLS for every command's channels when a CA is given; checked before any call, like a binary's."""
    global target
    files = {
        "HERALD_TLS_CA_FILE": ca_file,
        "HERALD_TLS_CLIENT_CERT_FILE": cert_file,
        "HERALD_TLS_CLIENT_KEY_FILE": key_file,
    }
    try:
        target = dataclasses.replace(target, tls=client_from_env(files))
    except ValueError as e:
        fail(str(e), USAGE)


def _category(name: str) -> common_pb2.Category.ValueType:
    if name.lower() not in categories.BY_NAME:
        fail(f"unknown category '{name}'; use one of {', '.join(categories.BY_NAME)}", USAGE)
    return categories.BY_NAME[name.lower()]


def _optional_category(name: str) -> common_pb2.Category.ValueType:
    return _category(name) if name else common_pb2.CATEGORY_UNSPECIFIED


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            fail(f"{what} '{value}' is not KEY=VALUE", USAGE)
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
    show(table)


AppId = Annotated[str, typer.Argument(help="the app's id, e.g. app_01JD3...")]


@apps_cli.command("create")
def apps_create(
    name: Annotated[str, typer.Argument(help="a name people recognise, e.g. checkout")],
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
    with target.admin_stub() as stub:
        reply = call(stub.CreateApp, request, target.admin())
    _apps_table([reply.app])
    out.print(f"API key (shown once, store it now): [bold]{reply.api_key}[/bold]", soft_wrap=True)


@apps_cli.command("list")
def apps_list(as_json: Json = False) -> None:
    """Every app, page by page."""
    apps: list[admin.App] = []
    token = ""
    with target.admin_stub() as stub:
        while True:
            page = call(stub.ListApps, admin.ListAppsRequest(page_size=200, page_token=token), target.admin())
            apps += page.apps
            if not (token := page.next_page_token):
                break
    if as_json:
        print_json(listing("apps", apps))
    else:
        _apps_table(apps)


@apps_cli.command("get")
def apps_get(app_id: AppId, as_json: Json = False) -> None:
    """One app: its channels, categories, rate limit, retention, whether it is disabled."""
    with target.admin_stub() as stub:
        app = call(stub.GetApp, admin.GetAppRequest(app_id=app_id), target.admin())
    if as_json:
        print_json(app)
    else:
        _apps_table([app])


@apps_cli.command("disable")
def apps_disable(app_id: AppId) -> None:
    """Refuse the app's calls from now on (messages already accepted are still delivered)."""
    with target.admin_stub() as stub:
        _apps_table([call(stub.DisableApp, admin.DisableAppRequest(app_id=app_id), target.admin())])


@apps_cli.command("enable")
def apps_enable(app_id: AppId) -> None:
    """Accept the app's calls again."""
    with target.admin_stub() as stub:
        _apps_table([call(stub.EnableApp, admin.EnableAppRequest(app_id=app_id), target.admin())])


@apps_cli.command("set-retention")
def apps_set_retention(
    app_id: AppId, days: Annotated[int, typer.Argument(help="days to keep them; 0 = forever")]
) -> None:
    """Keep the status records of the app's messages (and their content) N days (0 = forever); statistics stay."""
    request = admin.SetContentRetentionRequest(app_id=app_id, content_retention_days=days)
    with target.admin_stub() as stub:
        _apps_table([call(stub.SetContentRetention, request, target.admin())])


@apps_cli.command("rotate-key")
def apps_rotate_key(
    app_id: AppId,
    grace_hours: Annotated[float, typer.Option(help="how long the current keys keep working")] = 24.0,
) -> None:
    """Issue a new key; the current ones keep working for the grace period."""
    grace = duration_pb2.Duration()
    grace.FromNanoseconds(int(grace_hours * 3600 * 1e9))
    with target.admin_stub() as stub:
        reply = call(stub.RotateAppKey, admin.RotateAppKeyRequest(app_id=app_id, grace_period=grace), target.admin())
    out.print(f"new API key (shown once, store it now): [bold]{reply.api_key}[/bold]", soft_wrap=True)
    out.print(f"previous keys stop working at {_when(reply.previous_keys_expire_time)}")


TemplateId = Annotated[str, typer.Argument(help="the template's id, e.g. login-code")]


@templates_cli.command("apply")
def templates_apply(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="YAML: one template, a list, or several documents")
    ],
) -> None:
    """Create or update the templates in a YAML file (one mapping, a list, or several documents)."""
    documents = [d for d in yaml.safe_load_all(file.read_text()) if d]
    specs = [s for d in documents for s in (d if isinstance(d, list) else [d])]
    with target.admin_stub() as stub:
        for spec in specs:
            template = _template_from(spec)
            current = _get_or_none(stub, template.template_id)
            if current is None:
                created = call(stub.CreateTemplate, admin.CreateTemplateRequest(template=template), target.admin())
                out.print(f"{created.template_id}: created version {created.version}", soft_wrap=True)
            elif _same(current, template):
                out.print(f"{template.template_id}: unchanged (version {current.version})", soft_wrap=True)
            else:
                updated = call(stub.UpdateTemplate, admin.UpdateTemplateRequest(template=template), target.admin())
                out.print(f"{updated.template_id}: updated to version {updated.version}", soft_wrap=True)


@templates_cli.command("list")
def templates_list(
    archived: Annotated[bool, typer.Option(help="include archived templates")] = False, as_json: Json = False
) -> None:
    """Every template's latest version: category, channels, variables."""
    templates: list[admin.Template] = []
    token = ""
    with target.admin_stub() as stub:
        while True:
            request = admin.ListTemplatesRequest(page_size=200, page_token=token, show_archived=archived)
            page = call(stub.ListTemplates, request, target.admin())
            templates += page.templates
            if not (token := page.next_page_token):
                break
    if as_json:
        print_json(listing("templates", templates))
        return
    table = Table("template id", "version", "category", "channels", "variables", "archived")
    for t in templates:
        table.add_row(
            t.template_id,
            str(t.version),
            categories.name(t.category),
            ", ".join(dict.fromkeys(c.channel for c in t.contents)),
            ", ".join(t.variables),
            _when(t.archive_time) if t.HasField("archive_time") else "",
        )
    show(table)


@templates_cli.command("get")
def templates_get(
    template_id: TemplateId,
    version: Annotated[int, typer.Option(help="0 = latest")] = 0,
    as_json: Json = False,
) -> None:
    """Print a template as YAML, ready for `templates apply` (or as JSON with --json)."""
    with target.admin_stub() as stub:
        template = call(
            stub.GetTemplate, admin.GetTemplateRequest(template_id=template_id, version=version), target.admin()
        )
    if as_json:
        print_json(template)
        return
    spec = json_format.MessageToDict(template, preserving_proto_field_name=True)
    spec["category"] = categories.name(template.category)
    out.print(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), end="", soft_wrap=True)


@templates_cli.command("archive")
def templates_archive(template_id: TemplateId) -> None:
    """Retire a template: new sends of it are refused; its versions are kept."""
    with target.admin_stub() as stub:
        call(stub.ArchiveTemplate, admin.ArchiveTemplateRequest(template_id=template_id), target.admin())
    out.print(f"{template_id}: archived", soft_wrap=True)


@templates_cli.command("preview")
def templates_preview(
    template_id: TemplateId,
    var: Annotated[list[str], typer.Option("--var", help="KEY=VALUE (repeat)")] = [],  # noqa: B006
    locale: Annotated[str, typer.Option(help="e.g. zh-CN; empty = the template's default")] = "",
    as_json: Json = False,
) -> None:
    """Render a template with the given variables, per channel, without sending anything."""
    request = admin.PreviewTemplateRequest(template_id=template_id, variables=_pairs(var, "--var"), locale=locale)
    with target.admin_stub() as stub:
        reply = call(stub.PreviewTemplate, request, target.admin())
    if as_json:
        print_json(reply)
        return
    for content in reply.contents:
        out.rule(f"{content.channel} ({content.locale or 'default locale'})")
        for part in ("subject", "body", "html_body"):
            if text := getattr(content, part):
                out.print(f"[bold]{part}[/bold]: {text}")
        for key, value in content.data.items():
            out.print(f"[bold]data[{key}][/bold]: {value}")


# Provider accounts. The adapters check every field; heraldctl checks only what must never travel: a credential
# is the name of an environment variable, so a secret typed by mistake is refused here, and never echoed.
CREDENTIAL_PREFIX = "HERALD_PROVIDER_"
PLUGINS = sorted(e.name for e in entry_points(group="herald.providers"))
AccountName = Annotated[str, typer.Argument(help="the account's name, lower-case, e.g. twilio-main")]
Settings = Annotated[
    list[str], typer.Option("--setting", help="KEY=VALUE, a non-secret setting, e.g. from=+15005550006 (repeat)")
]
Credentials = Annotated[
    list[str],
    typer.Option(
        "--credential",
        help=f"KEY=VARIABLE: the adapters' environment variable ({CREDENTIAL_PREFIX}*) that holds a secret, e.g. "
        f"auth_token={CREDENTIAL_PREFIX}TWILIO_TOKEN (repeat); never the secret itself",
    ),
]
# What each field means; create shows herald's default, update changes only what is given.
ACCOUNT_HELP = {
    "endpoint": "the provider's base URL (host:port for SMTP); empty = its public one",
    "priority": "lower is tried first",
    "weight": "share of traffic among accounts of equal priority; 0 means 1",
    "rate": "calls per second, all adapters together; 0 = no limit",
    "timeout": "seconds one provider call may take; 0 means 10",
    "unit_price": "what one send costs, in --currency, e.g. 0.0079; 0 = free or unknown",
    "currency": "ISO 4217 code of --unit-price, e.g. USD",
}


def _changed(field: str) -> Any:
    return typer.Option(help=f"{ACCOUNT_HELP[field]}; unchanged when not given", show_default=False)


def _accounts_table(accounts: list[prov.ProviderAccount]) -> None:
    table = Table(
        "account", "provider", "channel", "priority", "weight", "rate/s", "timeout", "unit price", "disabled",
        "credentials (env)", "settings", "endpoint", "updated",
    )  # fmt: skip
    for a in accounts:
        table.add_row(
            a.name,
            a.provider,
            a.channel,
            str(a.priority),
            str(a.weight or 1),
            f"{a.rate_limit_per_second:g}" if a.rate_limit_per_second else "no limit",
            f"{a.timeout_seconds or 10:g}s",
            f"{Decimal(a.unit_price_micros) / 1_000_000:f} {a.currency_code}" if a.unit_price_micros else "-",
            "yes" if a.disabled else "",
            ", ".join(f"{k}={v}" for k, v in sorted(a.credentials.items())),
            ", ".join(f"{k}={v}" for k, v in sorted(a.settings.items())),
            a.endpoint or "public",
            _when(a.update_time if a.update_time.seconds else a.create_time),
        )
    show(table)


def _credentials(values: list[str]) -> dict[str, str]:
    found = {}
    for value in values:
        key, sep, variable = value.partition("=")
        if not sep or not key:  # the value may be a secret: say what is wrong, never what was typed
            fail("--credential takes KEY=VARIABLE, e.g. auth_token=HERALD_PROVIDER_TWILIO_TOKEN", USAGE)
        if not (variable.startswith(CREDENTIAL_PREFIX) and variable.replace("_", "").isalnum() and variable.isupper()):
            fail(
                f"--credential {key}: give the name of the environment variable that holds the secret "
                f"({CREDENTIAL_PREFIX}..., set on the adapters), never the secret itself",
                USAGE,
            )
        found[key] = variable
    return found


def _micros(price: str) -> int:
    try:
        micros = Decimal(price) * 1_000_000
    except InvalidOperation:
        fail(f"--unit-price '{price}' is not a number, e.g. 0.0079", USAGE)
    if not micros.is_finite() or micros < 0 or micros != micros.to_integral_value():
        fail(f"--unit-price '{price}': at least 0, to a millionth at most", USAGE)
    return int(micros)


def _provider_stub(ch: grpc.Channel) -> provider_service_pb2_grpc.ProviderServiceStub:
    return provider_service_pb2_grpc.ProviderServiceStub(ch)


@providers_cli.command("list")
def providers_list(
    channel_name: Annotated[str, typer.Option("--channel", help="only this channel's accounts, e.g. sms")] = "",
    as_json: Json = False,
) -> None:
    """Every provider account: which plug-in, its priority and weight, limits, price, the variables it reads."""
    with target.channel(target.adapters) as ch:
        reply = call(
            _provider_stub(ch).ListProviderAccounts,
            prov.ListProviderAccountsRequest(channel=channel_name),
            target.admin(),
        )
    if as_json:
        print_json(listing("accounts", reply.accounts))
    else:
        _accounts_table(list(reply.accounts))


@providers_cli.command("get")
def providers_get(name: AccountName, as_json: Json = False) -> None:
    """One provider account."""
    with target.channel(target.adapters) as ch:
        account = call(_provider_stub(ch).GetProviderAccount, prov.GetProviderAccountRequest(name=name), target.admin())
    if as_json:
        print_json(account)
    else:
        _accounts_table([account])


@providers_cli.command("create")
def providers_create(
    name: AccountName,
    provider: Annotated[str, typer.Option(help=f"the plug-in: {', '.join(PLUGINS)}")],
    endpoint: Annotated[str, typer.Option(help=ACCOUNT_HELP["endpoint"])] = "",
    setting: Settings = [],  # noqa: B006
    credential: Credentials = [],  # noqa: B006
    priority: Annotated[int, typer.Option(help=ACCOUNT_HELP["priority"])] = 0,
    weight: Annotated[int, typer.Option(help=ACCOUNT_HELP["weight"])] = 0,
    rate: Annotated[float, typer.Option(help=ACCOUNT_HELP["rate"])] = 0.0,
    timeout: Annotated[float, typer.Option(help=ACCOUNT_HELP["timeout"])] = 0.0,
    unit_price: Annotated[str, typer.Option(help=ACCOUNT_HELP["unit_price"])] = "0",
    currency: Annotated[str, typer.Option(help=ACCOUNT_HELP["currency"])] = "",
    disabled: Annotated[bool, typer.Option("--disabled", help="create it taking no traffic yet")] = False,
) -> None:
    """Add an account herald delivers through; every adapters process starts using it within seconds."""
    account = prov.ProviderAccount(
        name=name,
        provider=provider,
        endpoint=endpoint,
        settings=_pairs(setting, "--setting"),
        credentials=_credentials(credential),
        priority=priority,
        weight=weight,
        rate_limit_per_second=rate,
        timeout_seconds=timeout,
        unit_price_micros=_micros(unit_price),
        currency_code=currency,
        disabled=disabled,
    )
    with target.channel(target.adapters) as ch:
        created = call(
            _provider_stub(ch).CreateProviderAccount, prov.CreateProviderAccountRequest(account=account), target.admin()
        )
    _accounts_table([created])


@providers_cli.command("update")
def providers_update(
    name: AccountName,
    endpoint: Annotated[str | None, _changed("endpoint")] = None,
    setting: Settings = [],  # noqa: B006
    unset_setting: Annotated[list[str], typer.Option(help="KEY of a setting to remove (repeat)")] = [],  # noqa: B006
    credential: Credentials = [],  # noqa: B006
    unset_credential: Annotated[list[str], typer.Option(help="KEY of a credential to remove (repeat)")] = [],  # noqa: B006
    priority: Annotated[int | None, _changed("priority")] = None,
    weight: Annotated[int | None, _changed("weight")] = None,
    rate: Annotated[float | None, _changed("rate")] = None,
    timeout: Annotated[float | None, _changed("timeout")] = None,
    unit_price: Annotated[str | None, _changed("unit_price")] = None,
    currency: Annotated[str | None, _changed("currency")] = None,
    disabled: Annotated[
        bool | None, typer.Option("--disable/--enable", help="stop or resume its traffic", show_default=False)
    ] = None,
) -> None:
    """Change what the options give and nothing else; --setting and --credential add or replace one key each."""
    account = prov.ProviderAccount(name=name)
    paths = []
    for path, value in (
        ("endpoint", endpoint),
        ("priority", priority),
        ("weight", weight),
        ("rate_limit_per_second", rate),
        ("timeout_seconds", timeout),
        ("unit_price_micros", None if unit_price is None else _micros(unit_price)),
        ("currency_code", currency),
        ("disabled", disabled),
    ):
        if value is not None:
            setattr(account, path, value)
            paths.append(path)
    settings, credentials = _pairs(setting, "--setting"), _credentials(credential)
    if not (paths or settings or credentials or unset_setting or unset_credential):
        fail("nothing to change: give at least one option (see --help)", USAGE)
    with target.channel(target.adapters) as ch:
        stub = _provider_stub(ch)
        if settings or credentials or unset_setting or unset_credential:
            current = call(stub.GetProviderAccount, prov.GetProviderAccountRequest(name=name), target.admin())
            for path, changes, removed in (
                ("settings", settings, unset_setting),
                ("credentials", credentials, unset_credential),
            ):
                if changes or removed:
                    merged = {**getattr(current, path), **changes}
                    if unknown := [k for k in removed if k not in merged]:
                        fail(f"--unset-{path.removesuffix('s')} {unknown[0]}: the account has no such key", USAGE)
                    getattr(account, path).update({k: v for k, v in merged.items() if k not in removed})
                    paths.append(path)
        request = prov.UpdateProviderAccountRequest(account=account)
        request.update_mask.paths.extend(paths)
        updated = call(stub.UpdateProviderAccount, request, target.admin())
    _accounts_table([updated])


@providers_cli.command("delete")
def providers_delete(name: AccountName) -> None:
    """Remove an account; traffic moves to the channel's other accounts within seconds."""
    with target.channel(target.adapters) as ch:
        reply = call(
            _provider_stub(ch).DeleteProviderAccount, prov.DeleteProviderAccountRequest(name=name), target.admin()
        )
    out.print(f"{reply.name}: deleted", soft_wrap=True)


MessageId = Annotated[str, typer.Argument(help="the message's id, e.g. msg_01JD3...")]


@cli.command("send")
def send(
    template_id: Annotated[str, typer.Argument(help="the template to send")],
    to: Annotated[list[str], typer.Option("--to", help="CHANNEL=ADDRESS for one recipient (repeat)")] = [],  # noqa: B006
    user: Annotated[str, typer.Option(help="the recipient's user id in the directory")] = "",
    var: Annotated[list[str], typer.Option("--var", help="KEY=VALUE (repeat)")] = [],  # noqa: B006
    send_at: Annotated[str, typer.Option(help="ISO 8601 time to send at")] = "",
    idempotency_key: Annotated[str, typer.Option(help="the same key again sends nothing new (24 hours)")] = "",
    dry_run: Annotated[bool, typer.Option(help="only check that it is valid and renders; send nothing")] = False,
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
            fail(f"--send-at '{send_at}' is not an ISO 8601 time", USAGE)
    with target.channel(target.intake) as ch:
        reply = call(message_service_pb2_grpc.MessageServiceStub(ch).Send, request, target.app())
    if dry_run:
        out.print("dry run: valid and renders; nothing was sent")
    else:
        out.print(reply.message_id + (" (duplicate: sent before with this key)" if reply.duplicate else ""))


@cli.command("status")
def status(
    message_id: MessageId,
    history: Annotated[bool, typer.Option(help="every state each delivery went through")] = False,
    as_json: Json = False,
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
    with target.channel(target.feedback) as ch:
        stub = status_service_pb2_grpc.StatusServiceStub(ch)
        message = call(stub.GetMessage, request, target.app())
        pages = [message]
        while every_page and pages[-1].next_page_token:
            request.page_token = pages[-1].next_page_token
            pages.append(call(stub.GetMessage, request, target.app()))
    if as_json:  # one document: the first page's fields, every page's deliveries, the last page's token
        whole = status_service_pb2.Message()
        whole.CopyFrom(message)
        for page in pages[1:]:
            whole.deliveries.extend(page.deliveries)
        whole.next_page_token = pages[-1].next_page_token
        print_json(whole)
        return
    template = f"template {message.template_id} v{message.template_version}"
    out.print(f"{message.message_id}  {template}  sent {_when(message.create_time)}", soft_wrap=True)
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
    show(table)
    if token := pages[-1].next_page_token:
        out.print(f"more: --page-token {token} (or --all)", soft_wrap=True)


def _state_name(state: common_pb2.DeliveryState.ValueType) -> str:
    return common_pb2.DeliveryState.Name(state).removeprefix("DELIVERY_STATE_")


def _delivery_state(name: str) -> common_pb2.DeliveryState.ValueType:
    states = [n.removeprefix("DELIVERY_STATE_").lower() for n in common_pb2.DeliveryState.keys()[1:]]
    if name.lower() not in states:
        fail(f"--state '{name}': use one of {', '.join(states)}", USAGE)
    return common_pb2.DeliveryState.Value(f"DELIVERY_STATE_{name.upper()}")


@cli.command("cancel")
def cancel(message_id: MessageId) -> None:
    """Withdraw a message that has not been dispatched yet, or a dispatched one's escalation steps still waiting."""
    with target.channel(target.intake) as ch:
        answer = call(
            message_service_pb2_grpc.MessageServiceStub(ch).CancelMessage,
            msg.CancelMessageRequest(message_id=message_id),
            target.app(),
        )
    if answer.already_dispatched:
        steps = ", ".join(answer.cancelled_delivery_ids)
        out.print(f"{message_id}: already dispatched; cancelled its waiting escalation steps {steps}", soft_wrap=True)
    else:
        out.print(f"{message_id}: cancelled", soft_wrap=True)


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
            _when(row.bucket_start_time),
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


TopicKey = Annotated[str, typer.Argument(help="the topic's key, e.g. release-notes")]
UserFile = Annotated[Path, typer.Argument(help="user ids, one per line ('-' = standard input)", allow_dash=True)]
TOPIC_CHUNK = 1000


@topics_cli.command("create")
def topics_create(topic_key: TopicKey, name: Annotated[str, typer.Option(help="what people call it")] = "") -> None:
    """Create a topic of the app's, empty."""
    with target.channel(target.router) as ch:
        topic = topic_service_pb2.Topic(topic_key=topic_key, name=name)
        call(
            topic_service_pb2_grpc.TopicServiceStub(ch).CreateTopic,
            topic_service_pb2.CreateTopicRequest(topic=topic),
            target.app(),
        )
    out.print(f"{topic_key}: created", soft_wrap=True)


@topics_cli.command("list")
def topics_list(as_json: Json = False) -> None:
    """The app's topics and how many subscribe to each."""
    topics: list[topic_service_pb2.Topic] = []
    token = ""
    with target.channel(target.router) as ch:
        stub = topic_service_pb2_grpc.TopicServiceStub(ch)
        while True:
            request = topic_service_pb2.ListTopicsRequest(page_size=1000, page_token=token)
            page = call(stub.ListTopics, request, target.app())
            topics += page.topics
            if not (token := page.next_page_token):
                break
    if as_json:
        print_json({"topics": [json_format.MessageToDict(t, preserving_proto_field_name=True) for t in topics]})
        return
    table = Table("topic", "name", "subscribers", "created")
    for topic in topics:
        table.add_row(topic.topic_key, topic.name, str(topic.subscriber_count), _when(topic.create_time))
    show(table)


@topics_cli.command("subscribe")
def topics_subscribe(topic_key: TopicKey, users: UserFile) -> None:
    """Subscribe the users in the file (streamed a thousand at a time, however many)."""
    requests = (topic_service_pb2.AddSubscribersRequest(topic_key=topic_key, user_ids=c) for c in _user_chunks(users))
    with target.channel(target.router) as ch:
        reply = call(topic_service_pb2_grpc.TopicServiceStub(ch).AddSubscribers, requests, target.app())
    out.print(f"{topic_key}: {reply.added_count} subscribed ({reply.subscriber_count} in all)", soft_wrap=True)


@topics_cli.command("unsubscribe")
def topics_unsubscribe(topic_key: TopicKey, users: UserFile) -> None:
    """Unsubscribe the users in the file."""
    requests = (
        topic_service_pb2.RemoveSubscribersRequest(topic_key=topic_key, user_ids=c) for c in _user_chunks(users)
    )
    with target.channel(target.router) as ch:
        reply = call(topic_service_pb2_grpc.TopicServiceStub(ch).RemoveSubscribers, requests, target.app())
    out.print(f"{topic_key}: {reply.removed_count} unsubscribed ({reply.subscriber_count} in all)", soft_wrap=True)


@topics_cli.command("delete")
def topics_delete(topic_key: TopicKey) -> None:
    """Delete a topic and its subscriptions (messages already sent to it are still delivered)."""
    with target.channel(target.router) as ch:
        request = topic_service_pb2.DeleteTopicRequest(topic_key=topic_key)
        call(topic_service_pb2_grpc.TopicServiceStub(ch).DeleteTopic, request, target.app())
    out.print(f"{topic_key}: deleted", soft_wrap=True)


def _user_chunks(users: Path) -> Iterator[list[str]]:
    """The file's user ids, a chunk at a time: a million need not be in memory at once."""
    with sys.stdin if str(users) == "-" else users.open() as lines:
        chunk: list[str] = []
        for line in lines:
            if user_id := line.strip():
                chunk.append(user_id)
            if len(chunk) == TOPIC_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


@cli.command("export")
def export(
    since: Since = "",
    until: Until = "",
    format_name: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
    app_id: Annotated[str, typer.Option("--app", help="only this app (admin token)")] = "",
    to_file: Annotated[Path | None, typer.Option("--out", help="write here", show_default="stdout, csv only")] = None,
) -> None:
    """Raw status events of a time range, as herald streams them, for the data platform.

    Progress goes to stderr, a line per chunk herald sends, so stdout holds only the file."""
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


DlqChannel = Annotated[str, typer.Option("--channel", help="only this channel")]
DlqCategory = Annotated[str, typer.Option(help="only this category")]
Limit = Annotated[int, typer.Option(help="at most this many, oldest first")]


def _dead_letter_stub(ch: grpc.Channel) -> dead_letter_service_pb2_grpc.DeadLetterServiceStub:
    return dead_letter_service_pb2_grpc.DeadLetterServiceStub(ch)


@dlq_cli.command("list")
def dlq_list(
    channel_name: DlqChannel = "", category: DlqCategory = "", limit: Limit = 100, as_json: Json = False
) -> None:
    """Dead letters: which delivery, how many attempts, the provider's last error."""
    request = dead_letter_service_pb2.ListDeadLettersRequest(
        channel=channel_name, category=_optional_category(category), page_size=limit
    )
    with target.channel(target.adapters) as ch:
        reply = call(_dead_letter_stub(ch).ListDeadLetters, request, target.admin())
    if as_json:
        print_json(reply)
        return
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
    show(table)
    if reply.next_page_token:
        out.print(f"(more after seq {reply.next_page_token})")


@dlq_cli.command("replay")
def dlq_replay(
    sequences: Annotated[
        list[int] | None,
        typer.Argument(help="the dead letters to replay, by the seq `dlq list` shows", min=1, max=storable.MAX_INTEGER),
    ] = None,
    channel_name: DlqChannel = "",
    category: DlqCategory = "",
    every: Annotated[
        bool, typer.Option("--all", help="with no sequence and no filter: every dead letter, of every channel")
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, max=1000, help="dead letters replayed per call; a progress line for each")
    ] = 500,
) -> None:
    """Put dead letters back on their delivery subject, with a fresh retry budget: the SEQ given (each must be
    waiting, and of --channel/--category when given: otherwise nothing is replayed), or, with no SEQ, every one
    of --channel/--category waiting when it starts (--all: every one)."""
    request = dead_letter_service_pb2.ReplayDeadLettersRequest(
        sequences=list(dict.fromkeys(sequences or [])), channel=channel_name, category=_optional_category(category)
    )
    if request.sequences and every:
        fail("give sequences or --all, not both", USAGE)
    if not (request.sequences or channel_name or category or every):
        fail(
            "say which dead letters to replay: their SEQ (`heraldctl dlq list` shows them), --channel and/or "
            "--category, or --all for every one",
            USAGE,
        )
    with target.channel(target.adapters) as ch:
        stub = _dead_letter_stub(ch)
        listed = bool(request.sequences)
        replayed = _replay_listed(stub, request) if listed else _replay_matching(stub, request, batch_size)
    out.print(f"replayed {replayed}")


def _replay_listed(
    stub: dead_letter_service_pb2_grpc.DeadLetterServiceStub, request: dead_letter_service_pb2.ReplayDeadLettersRequest
) -> int:
    """Replays the dead letters listed, once each is known to be waiting: a mistyped one replays nothing."""
    if missing := [s for s in request.sequences if not _waiting(stub, s, request)]:
        which = [", ".join(map(str, missing))]
        which += [f"of category {categories.name(request.category)}"] if request.category else []
        which += [f"on channel {request.channel}"] if request.channel else []
        fail(
            f"no dead letter {' '.join(which)} is waiting (replayed already, or not a dead letter's seq: "
            "`heraldctl dlq list` shows them); nothing was replayed",
            USAGE,
        )
    replayed = int(call(stub.ReplayDeadLetters, request, target.admin()).replayed)
    if gone := len(request.sequences) - replayed:
        out.print(f"replayed {replayed}")
        fail(f"{gone} of them left the list while this ran (replayed by someone else?)", USAGE)
    return replayed


def _replay_matching(
    stub: dead_letter_service_pb2_grpc.DeadLetterServiceStub,
    request: dead_letter_service_pb2.ReplayDeadLettersRequest,
    batch_size: int,
) -> int:
    """Replays every dead letter of the request's channel and category waiting now, a batch per call, with a
    progress line on stderr after each when there is more than one."""
    found = list(_waiting_sequences(stub, request))
    replayed = 0
    for start in range(0, len(found), batch_size):
        del request.sequences[:]
        request.sequences.extend(found[start : start + batch_size])
        replayed += call(stub.ReplayDeadLetters, request, target.admin()).replayed
        if len(found) > batch_size:
            err.print(f"replayed {replayed:,} of {len(found):,}")
    return replayed


def _waiting(
    stub: dead_letter_service_pb2_grpc.DeadLetterServiceStub,
    sequence: int,
    replay: dead_letter_service_pb2.ReplayDeadLettersRequest,
) -> bool:
    """Whether the dead letter `sequence` is waiting, and matches the replay's channel and category."""
    request = dead_letter_service_pb2.ListDeadLettersRequest(
        channel=replay.channel, category=replay.category, page_size=1, page_token=str(sequence)
    )
    page = call(stub.ListDeadLetters, request, target.admin())
    return bool(page.dead_letters) and page.dead_letters[0].sequence == sequence


def _waiting_sequences(
    stub: dead_letter_service_pb2_grpc.DeadLetterServiceStub, replay: dead_letter_service_pb2.ReplayDeadLettersRequest
) -> Iterator[int]:
    """The sequences of every dead letter waiting that matches the replay's channel and category, oldest first."""
    request = dead_letter_service_pb2.ListDeadLettersRequest(
        channel=replay.channel, category=replay.category, page_size=1000
    )
    while True:
        page = call(stub.ListDeadLetters, request, target.admin())
        yield from (d.sequence for d in page.dead_letters)
        if not page.next_page_token:
            return
        request.page_token = page.next_page_token


@dlq_cli.command("unprocessed")
def dlq_unprocessed(
    consumer: Annotated[str, typer.Option(help="only this consumer's, e.g. router-notification")] = "",
    limit: Limit = 100,
    as_json: Json = False,
) -> None:
    """Messages a stage could not handle after its last retry: which consumer, from which subject, the last error."""
    request = dead_letter_service_pb2.ListUnprocessedMessagesRequest(consumer=consumer, page_size=limit)
    with target.channel(target.adapters) as ch:
        reply = call(_dead_letter_stub(ch).ListUnprocessedMessages, request, target.admin())
    if as_json:
        print_json(reply)
        return
    table = Table("seq", "consumer", "subject", "deliveries", "bytes", "reason", "died")
    for m in reply.unprocessed_messages:
        table.add_row(
            str(m.sequence), m.consumer, m.subject, str(m.deliveries), str(m.size_bytes), m.reason, _when(m.dead_time)
        )
    show(table)
    if reply.next_page_token:
        out.print(f"(more after seq {reply.next_page_token})")


@dlq_cli.command("replay-unprocessed")
def dlq_replay_unprocessed(
    sequences: Annotated[
        list[int] | None,
        typer.Argument(help="messages to replay, by the seq `dlq unprocessed` shows; none = all of --consumer"),
    ] = None,
    consumer: Annotated[str, typer.Option(help="only this consumer's")] = "",
) -> None:
    """Put unprocessed messages back on their subject, with a fresh retry budget, once the cause is fixed."""
    request = dead_letter_service_pb2.ReplayUnprocessedMessagesRequest(sequences=sequences or [], consumer=consumer)
    with target.channel(target.adapters) as ch:
        reply = call(_dead_letter_stub(ch).ReplayUnprocessedMessages, request, target.admin())
    out.print(f"replayed {reply.replayed}")


def _template_from(spec: dict[str, Any]) -> admin.Template:
    spec = dict(spec)
    category = _category(str(spec.pop("category", "")))
    try:
        template = json_format.ParseDict(spec, admin.Template())
    except json_format.ParseError as e:
        fail(f"template {spec.get('template_id', '?')}: {e}", USAGE)
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
    """Whether applying `wanted` would change nothing: every field a template's author writes is the same."""
    written = admin.Template()
    written.CopyFrom(current)
    for output_only in ("version", "create_time", "variables", "archive_time"):
        written.ClearField(output_only)
    return written == wanted


def main() -> None:
    cli()
