"""`heraldctl audit`: who changed what in herald, newest first (served by feedback; an admin's, operator's or
support's token)."""

from datetime import UTC, datetime
from itertools import islice
from typing import Annotated

import typer
from google.protobuf import json_format
from herald.v1 import audit_service_pb2, audit_service_pb2_grpc
from rich.table import Table

from herald.tools.heraldctl.arguments import Json
from herald.tools.heraldctl.connection import USAGE, Target, call, fail
from herald.tools.heraldctl.output import print_json, show, when
from herald.tools.heraldctl.paging import pages

cli = typer.Typer(name="audit", help="Who changed what in herald (an operator's token).", no_args_is_help=True)
PAGE = 200


def _time(option: str, value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value).astimezone(UTC) if value else None
    except ValueError as e:
        fail(f"{option}: {e}", USAGE)


@cli.command("list")
def audit_list(
    ctx: typer.Context,
    actor: Annotated[str, typer.Option(help="only this actor: an operator's subject, admin-token, app:<id>")] = "",
    action: Annotated[
        str,
        typer.Option(help="only this RPC, e.g. herald.v1.AdminService/DisableApp, or a service ending in '/'"),
    ] = "",
    target_name: Annotated[str, typer.Option("--target", help="only this target, e.g. templates/login-code")] = "",
    since: Annotated[str, typer.Option("--from", help="ISO 8601 start", show_default="the oldest kept")] = "",
    until: Annotated[str, typer.Option("--to", help="ISO 8601 end", show_default="now")] = "",
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 100,
    as_json: Json = False,
) -> None:
    """Each change: when, who, what, on which target, and how it ended."""
    target: Target = ctx.obj
    request = audit_service_pb2.ListAuditEventsRequest(
        actor=actor, action=action, target=target_name, page_size=min(limit, PAGE)
    )
    for field, value in (("start_time", _time("--from", since)), ("end_time", _time("--to", until))):
        if value is not None:
            getattr(request, field).FromDatetime(value)
    with target.channel(target.feedback) as ch:
        stub = audit_service_pb2_grpc.AuditServiceStub(ch)

        def page(token: str) -> audit_service_pb2.ListAuditEventsResponse:
            request.page_token = token
            reply: audit_service_pb2.ListAuditEventsResponse = call(stub.ListAuditEvents, request, target.admin())
            return reply

        events = list(islice((e for p in pages(page) for e in p.audit_events), limit))
    if as_json:
        print_json({"audit_events": [json_format.MessageToDict(e, preserving_proto_field_name=True) for e in events]})
        return
    table = Table("when", "actor", "action", "target", "outcome")
    for event in events:
        outcome = event.outcome if event.outcome == "OK" else f"{event.outcome}: {event.outcome_message}"
        table.add_row(
            when(event.occur_time), event.actor, event.action.removeprefix("herald.v1."), event.target, outcome
        )
    show(table)
