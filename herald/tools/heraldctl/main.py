"""heraldctl: apps, keys, templates, provider accounts, send, status, cancel, statistics, export, the suppression
list, dead letters, the audit trail - over gRPC, with clear output and exit codes. This module assembles the command
groups of herald/tools/heraldctl/commands and settles, before any of them runs, where herald is and how to reach it
(the context object)."""

import dataclasses
from importlib.metadata import version
from typing import Annotated

import typer

from herald.tools.heraldctl.commands import (
    apps,
    audit,
    dlq,
    messages,
    providers,
    stats,
    suppressions,
    templates,
    topics,
)
from herald.tools.heraldctl.connection import (
    DEFAULT_ADAPTERS,
    DEFAULT_FEEDBACK,
    DEFAULT_INTAKE,
    DEFAULT_ROUTER,
    endpoints,
    trust,
)

# The console script's entry, the app tests invoke, and the endpoint options every command takes.
__all__ = ["cli", "endpoints", "main"]

cli = typer.Typer(
    help="Operate herald: apps, keys, templates, provider accounts, send, status, cancel, statistics, export, the "
    "suppression list, dead letters, the audit trail.\n\nCredentials come from the environment, never from options: "
    "operators' commands use a signed-in operator's token, HERALD_TOKEN (or the file HERALD_TOKEN_FILE names), else "
    "HERALD_ADMIN_TOKEN "
    "(default: the file `make up` writes, $HERALD_DATA_DIR/admin-token, HERALD_DATA_DIR defaulting to .herald); "
    "an app's own calls (send, status, cancel, and stats and export when it is set) use HERALD_API_KEY.\n\n"
    "Exit codes: 0 done, 1 herald refused the request, 2 bad usage, 3 herald unreachable.",
    no_args_is_help=True,
)
# In the order --help lists them: messages and stats add commands of heraldctl's own (send, status, cancel, stats,
# export), each other module a group.
for group in (messages, stats, apps, templates, providers, topics, suppressions, dlq, audit):
    cli.add_typer(group.cli)


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"heraldctl {version('herald')}")
        raise typer.Exit()


@cli.callback()
def root(
    ctx: typer.Context,
    intake: Annotated[
        str, typer.Option(envvar="HERALD_INTAKE_ADDR", help="intake's host:port (apps, templates, send, cancel)")
    ] = DEFAULT_INTAKE,
    router: Annotated[
        str, typer.Option(envvar="HERALD_ROUTER_ADDR", help="the router's host:port (topics, suppressions)")
    ] = (DEFAULT_ROUTER),
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
    ctx.obj = dataclasses.replace(
        endpoints(intake, router, adapters, feedback), tls=trust(ca_file, cert_file, key_file)
    )


def main() -> None:
    cli()
