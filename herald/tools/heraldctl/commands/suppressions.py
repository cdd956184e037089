"""`heraldctl suppressions`: the addresses herald does not send to (served by the router; an operator's token to
change the list, support's to read it)."""

from itertools import islice
from typing import Annotated

import typer
from herald.v1 import common_pb2, suppression_service_pb2, suppression_service_pb2_grpc
from rich.table import Table

from herald.libs import categories
from herald.tools.heraldctl.arguments import Json, parse_optional_category
from herald.tools.heraldctl.connection import USAGE, Target, call, fail
from herald.tools.heraldctl.output import listing, print_json, show, when
from herald.tools.heraldctl.paging import pages

cli = typer.Typer(
    name="suppressions", help="Addresses herald does not send to (an operator's token).", no_args_is_help=True
)
PAGE = 500
R = suppression_service_pb2.SuppressionReason
REASONS = {R.Name(r).removeprefix("SUPPRESSION_REASON_").lower(): r for r in R.values() if r}
Category = Annotated[str, typer.Option(help="critical, notification or marketing", show_default="every category")]


def _reason(name: str) -> int:
    if name and name.lower() not in REASONS:
        fail(f"unknown reason '{name}'; use one of {', '.join(REASONS)}", USAGE)
    return REASONS[name.lower()] if name else 0


@cli.command("list")
def suppressions_list(
    ctx: typer.Context,
    channel: Annotated[str, typer.Option(help="only this channel, e.g. email")] = "",
    address: Annotated[str, typer.Option(help="only this address")] = "",
    reason: Annotated[str, typer.Option(help=f"only this reason: {', '.join(REASONS)}")] = "",
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 100,
    as_json: Json = False,
) -> None:
    """Each suppressed address: channel, category, why, who said so, since when."""
    target: Target = ctx.obj
    request = suppression_service_pb2.ListSuppressionsRequest(
        channel=channel, address=address, reason=R.ValueType(_reason(reason)), page_size=min(limit, PAGE)
    )
    with target.channel(target.router) as ch:
        stub = suppression_service_pb2_grpc.SuppressionServiceStub(ch)

        def page(token: str) -> suppression_service_pb2.ListSuppressionsResponse:
            request.page_token = token
            reply: suppression_service_pb2.ListSuppressionsResponse = call(
                stub.ListSuppressions, request, target.admin()
            )
            return reply

        found = list(islice((s for p in pages(page) for s in p.suppressions), limit))
    if as_json:
        print_json(listing("suppressions", found))
        return
    table = Table("channel", "address", "category", "reason", "source", "since", "detail")
    for entry in found:
        table.add_row(
            entry.channel,
            entry.address,
            categories.name(entry.category) if entry.category else "every",
            R.Name(entry.reason).removeprefix("SUPPRESSION_REASON_").lower(),
            entry.source,
            when(entry.create_time),
            entry.detail,
        )
    show(table)


@cli.command("add")
def suppressions_add(
    ctx: typer.Context,
    channel: Annotated[str, typer.Argument(help="e.g. email or sms")],
    address: Annotated[str, typer.Argument(help="the e-mail address or phone number")],
    category: Category = "",
    detail: Annotated[str, typer.Option(help="why, in words, kept with the entry")] = "",
    as_json: Json = False,
) -> None:
    """Stop sending to an address (reason: manual)."""
    target: Target = ctx.obj
    entry = suppression_service_pb2.Suppression(
        channel=channel, address=address, category=parse_optional_category(category), detail=detail
    )
    with target.channel(target.router) as ch:
        stub = suppression_service_pb2_grpc.SuppressionServiceStub(ch)
        added = call(
            stub.CreateSuppression, suppression_service_pb2.CreateSuppressionRequest(suppression=entry), target.admin()
        )
    if as_json:
        print_json(added)
        return
    typer.echo(f"suppressed {added.channel} {added.address} for {_for(added.category)}")


@cli.command("remove")
def suppressions_remove(
    ctx: typer.Context,
    channel: Annotated[str, typer.Argument(help="e.g. email or sms")],
    address: Annotated[str, typer.Argument(help="the e-mail address or phone number")],
    category: Category = "",
) -> None:
    """Send to an address again (its entry for that category goes)."""
    target: Target = ctx.obj
    request = suppression_service_pb2.DeleteSuppressionRequest(
        channel=channel, address=address, category=parse_optional_category(category)
    )
    with target.channel(target.router) as ch:
        stub = suppression_service_pb2_grpc.SuppressionServiceStub(ch)
        removed = call(stub.DeleteSuppression, request, target.admin()).suppression
    typer.echo(f"{removed.channel} {removed.address} is no longer suppressed for {_for(removed.category)}")


def _for(category: common_pb2.Category.ValueType) -> str:
    return f"{categories.name(category)} messages" if category else "every category"
