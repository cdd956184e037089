"""`heraldctl send`, `status` and `cancel`: one message, with the app's key (HERALD_API_KEY)."""

from datetime import UTC, datetime
from itertools import islice
from typing import Annotated

import typer
from herald.v1 import common_pb2, message_service_pb2_grpc, status_service_pb2, status_service_pb2_grpc
from herald.v1 import message_service_pb2 as msg
from rich.table import Table

from herald.tools.heraldctl.arguments import Json, parse_pairs
from herald.tools.heraldctl.connection import USAGE, Target, call, fail
from herald.tools.heraldctl.output import out, print_json, show, when
from herald.tools.heraldctl.paging import pages

# Top-level commands: main.py merges them into heraldctl itself.
cli = typer.Typer()
MessageId = Annotated[str, typer.Argument(help="the message's id, e.g. msg_01JD3...")]


@cli.command("send")
def send(
    ctx: typer.Context,
    template_id: Annotated[str, typer.Argument(help="the template to send")],
    to: Annotated[list[str], typer.Option("--to", help="CHANNEL=ADDRESS for one recipient (repeat)")] = [],  # noqa: B006
    user: Annotated[str, typer.Option(help="the recipient's user id in the directory")] = "",
    var: Annotated[list[str], typer.Option("--var", help="KEY=VALUE (repeat)")] = [],  # noqa: B006
    send_at: Annotated[str, typer.Option(help="ISO 8601 time to send at")] = "",
    idempotency_key: Annotated[str, typer.Option(help="the same key again sends nothing new (24 hours)")] = "",
    dry_run: Annotated[bool, typer.Option(help="only check that it is valid and renders; send nothing")] = False,
) -> None:
    """Send a message to one recipient with the app key in HERALD_API_KEY."""
    target: Target = ctx.obj
    request = msg.SendRequest(
        template_id=template_id,
        recipients=[msg.Recipient(user_id=user, addresses=parse_pairs(to, "--to"))],
        variables=parse_pairs(var, "--var"),
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
    ctx: typer.Context,
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
    target: Target = ctx.obj
    wanted = _delivery_state(state) if state else common_pb2.DELIVERY_STATE_UNSPECIFIED
    with target.channel(target.feedback) as ch:
        stub = status_service_pb2_grpc.StatusServiceStub(ch)
        request = status_service_pb2.GetMessageRequest(
            message_id=message_id, state=wanted, user_id=user, channel=channel_name, page_size=page_size
        )

        def page_of(token: str) -> status_service_pb2.Message:
            request.page_token = token
            page: status_service_pb2.Message = call(stub.GetMessage, request, target.app())
            return page

        fetched = list(islice(pages(page_of, page_token), None if every_page else 1))
    message = fetched[0]
    if as_json:  # one document: the first page's fields, every page's deliveries, the last page's token
        whole = status_service_pb2.Message()
        whole.CopyFrom(message)
        for page in fetched[1:]:
            whole.deliveries.extend(page.deliveries)
        whole.next_page_token = fetched[-1].next_page_token
        print_json(whole)
        return
    template = f"template {message.template_id} v{message.template_version}"
    out.print(f"{message.message_id}  {template}  sent {when(message.create_time)}", soft_wrap=True)
    counts = ", ".join(f"{_state_name(c.state).lower()} {c.count:,}" for c in message.delivery_state_counts)
    noun = "delivery" if message.delivery_count == 1 else "deliveries"
    out.print(f"{message.delivery_count:,} {noun}" + (f": {counts}" if counts else ""))
    table = Table("delivery", "user", "channel", "state", "attempts", "reason", "updated")
    for d in (d for page in fetched for d in page.deliveries):
        table.add_row(
            d.delivery_id, d.user_id, d.channel, _state_name(d.state), str(d.attempts), d.reason, when(d.update_time)
        )
        for h in d.history if history else []:
            table.add_row("", "", "", f"  {_state_name(h.state).lower()}", str(h.attempt), h.reason, when(h.occur_time))
    show(table)
    if token := fetched[-1].next_page_token:
        out.print(f"more: --page-token {token} (or --all)", soft_wrap=True)


def _state_name(state: common_pb2.DeliveryState.ValueType) -> str:
    return common_pb2.DeliveryState.Name(state).removeprefix("DELIVERY_STATE_")


def _delivery_state(name: str) -> common_pb2.DeliveryState.ValueType:
    states = [n.removeprefix("DELIVERY_STATE_").lower() for n in common_pb2.DeliveryState.keys()[1:]]
    if name.lower() not in states:
        fail(f"--state '{name}': use one of {', '.join(states)}", USAGE)
    return common_pb2.DeliveryState.Value(f"DELIVERY_STATE_{name.upper()}")


@cli.command("cancel")
def cancel(ctx: typer.Context, message_id: MessageId) -> None:
    """Withdraw a message that has not been dispatched yet, or a dispatched one's escalation steps still waiting."""
    target: Target = ctx.obj
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
