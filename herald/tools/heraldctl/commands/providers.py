"""`heraldctl providers`: the provider accounts herald delivers through.

The adapters check every field; heraldctl checks only what must never travel: a credential is the name of an
environment variable, so a secret typed by mistake is refused here, and never echoed."""

from decimal import Decimal, InvalidOperation
from importlib.metadata import entry_points
from typing import Annotated, Any

import typer
from herald.v1 import provider_service_pb2 as prov
from herald.v1 import provider_service_pb2_grpc
from rich.table import Table

from herald.libs import categories
from herald.tools.heraldctl.arguments import Json, parse_category, parse_pairs
from herald.tools.heraldctl.connection import USAGE, Target, call, fail
from herald.tools.heraldctl.output import listing, out, print_json, show, when

cli = typer.Typer(
    name="providers",
    help="Provider accounts herald delivers through (admin token; served by the adapters). An account names the "
    "environment variables of the adapters that hold its secrets (HERALD_PROVIDER_*), never the secrets.",
    no_args_is_help=True,
)
Stub = provider_service_pb2_grpc.ProviderServiceStub
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
Categories = Annotated[
    list[str],
    typer.Option(
        "--category",
        help="reserve the account for this category: critical, notification or marketing (repeat); none = every "
        "category",
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
        "account", "provider", "channel", "categories", "priority", "weight", "rate/s", "timeout", "unit price",
        "disabled",
        "credentials (env)", "settings", "endpoint", "updated",
    )  # fmt: skip
    for a in accounts:
        table.add_row(
            a.name,
            a.provider,
            a.channel,
            ", ".join(categories.name(c) for c in a.categories) or "every",
            str(a.priority),
            str(a.weight or 1),
            f"{a.rate_limit_per_second:g}" if a.rate_limit_per_second else "no limit",
            f"{a.timeout_seconds or 10:g}s",
            f"{Decimal(a.unit_price_micros) / 1_000_000:f} {a.currency_code}" if a.unit_price_micros else "-",
            "yes" if a.disabled else "",
            ", ".join(f"{k}={v}" for k, v in sorted(a.credentials.items())),
            ", ".join(f"{k}={v}" for k, v in sorted(a.settings.items())),
            a.endpoint or "public",
            when(a.update_time if a.update_time.seconds else a.create_time),
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


@cli.command("list")
def providers_list(
    ctx: typer.Context,
    channel_name: Annotated[str, typer.Option("--channel", help="only this channel's accounts, e.g. sms")] = "",
    as_json: Json = False,
) -> None:
    """Every provider account: which plug-in, its priority and weight, limits, price, the variables it reads."""
    target: Target = ctx.obj
    with target.channel(target.adapters) as ch:
        reply = call(
            Stub(ch).ListProviderAccounts,
            prov.ListProviderAccountsRequest(channel=channel_name),
            target.admin(),
        )
    if as_json:
        print_json(listing("accounts", reply.accounts))
    else:
        _accounts_table(list(reply.accounts))


@cli.command("get")
def providers_get(ctx: typer.Context, name: AccountName, as_json: Json = False) -> None:
    """One provider account."""
    target: Target = ctx.obj
    with target.channel(target.adapters) as ch:
        account = call(Stub(ch).GetProviderAccount, prov.GetProviderAccountRequest(name=name), target.admin())
    if as_json:
        print_json(account)
    else:
        _accounts_table([account])


@cli.command("create")
def providers_create(
    ctx: typer.Context,
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
    category: Categories = [],  # noqa: B006
) -> None:
    """Add an account herald delivers through; every adapters process starts using it within seconds."""
    target: Target = ctx.obj
    account = prov.ProviderAccount(
        name=name,
        provider=provider,
        endpoint=endpoint,
        settings=parse_pairs(setting, "--setting"),
        credentials=_credentials(credential),
        priority=priority,
        weight=weight,
        rate_limit_per_second=rate,
        timeout_seconds=timeout,
        unit_price_micros=_micros(unit_price),
        currency_code=currency,
        disabled=disabled,
        categories=[parse_category(c) for c in category],
    )
    with target.channel(target.adapters) as ch:
        created = call(
            Stub(ch).CreateProviderAccount, prov.CreateProviderAccountRequest(account=account), target.admin()
        )
    _accounts_table([created])


@cli.command("update")
def providers_update(
    ctx: typer.Context,
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
    category: Categories = [],  # noqa: B006
    every_category: Annotated[bool, typer.Option(help="let it carry every category again")] = False,
) -> None:
    """Change what the options give and nothing else; --setting and --credential add or replace one key each."""
    target: Target = ctx.obj
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
    if category or every_category:
        account.categories.extend(parse_category(c) for c in category)
        paths.append("categories")
    settings, credentials = parse_pairs(setting, "--setting"), _credentials(credential)
    if not (paths or settings or credentials or unset_setting or unset_credential):
        fail("nothing to change: give at least one option (see --help)", USAGE)
    with target.channel(target.adapters) as ch:
        stub = Stub(ch)
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


@cli.command("delete")
def providers_delete(ctx: typer.Context, name: AccountName) -> None:
    """Remove an account; traffic moves to the channel's other accounts within seconds."""
    target: Target = ctx.obj
    with target.channel(target.adapters) as ch:
        reply = call(Stub(ch).DeleteProviderAccount, prov.DeleteProviderAccountRequest(name=name), target.admin())
    out.print(f"{reply.name}: deleted", soft_wrap=True)
