"""`heraldctl dlq`: deliveries that failed after their last retry, and messages a stage gave up on - listed, and
replayed with a fresh retry budget once the cause is fixed (served by the adapters, admin token).

A replay of the sequences given first checks each is waiting (and of the --channel/--category given), so a
mistyped one replays nothing."""

from collections.abc import Iterator
from typing import Annotated

import typer
from herald.v1 import dead_letter_service_pb2, dead_letter_service_pb2_grpc
from rich.table import Table

from herald.libs import categories, storable
from herald.tools.heraldctl.arguments import Json, parse_optional_category
from herald.tools.heraldctl.connection import USAGE, Target, call, err, fail
from herald.tools.heraldctl.output import out, print_json, show, when
from herald.tools.heraldctl.paging import pages

cli = typer.Typer(name="dlq", help="Deliveries that failed after their last retry (admin token).", no_args_is_help=True)
DlqChannel = Annotated[str, typer.Option("--channel", help="only this channel")]
DlqCategory = Annotated[str, typer.Option(help="only this category")]
Limit = Annotated[int, typer.Option(help="at most this many, oldest first")]
Stub = dead_letter_service_pb2_grpc.DeadLetterServiceStub


@cli.command("list")
def dlq_list(
    ctx: typer.Context,
    channel_name: DlqChannel = "",
    category: DlqCategory = "",
    limit: Limit = 100,
    as_json: Json = False,
) -> None:
    """Dead letters: which delivery, how many attempts, the provider's last error."""
    target: Target = ctx.obj
    request = dead_letter_service_pb2.ListDeadLettersRequest(
        channel=channel_name, category=parse_optional_category(category), page_size=limit
    )
    with target.channel(target.adapters) as ch:
        reply = call(Stub(ch).ListDeadLetters, request, target.admin())
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
            when(d.dead_time),
        )
    show(table)
    if reply.next_page_token:
        out.print(f"(more after seq {reply.next_page_token})")


@cli.command("replay")
def dlq_replay(
    ctx: typer.Context,
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
    target: Target = ctx.obj
    request = dead_letter_service_pb2.ReplayDeadLettersRequest(
        sequences=list(dict.fromkeys(sequences or [])), channel=channel_name, category=parse_optional_category(category)
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
        stub = Stub(ch)
        listed = bool(request.sequences)
        replayed = (
            _replay_listed(target, stub, request) if listed else _replay_matching(target, stub, request, batch_size)
        )
    out.print(f"replayed {replayed}")


def _replay_listed(target: Target, stub: Stub, request: dead_letter_service_pb2.ReplayDeadLettersRequest) -> int:
    """Replays the dead letters listed, once each is known to be waiting: a mistyped one replays nothing."""
    if missing := [s for s in request.sequences if not _waiting(target, stub, s, request)]:
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
    target: Target, stub: Stub, request: dead_letter_service_pb2.ReplayDeadLettersRequest, batch_size: int
) -> int:
    """Replays every dead letter of the request's channel and category waiting now, a batch per call, with a
    progress line on stderr after each when there is more than one."""
    found = list(_waiting_sequences(target, stub, request))
    replayed = 0
    for start in range(0, len(found), batch_size):
        del request.sequences[:]
        request.sequences.extend(found[start : start + batch_size])
        replayed += call(stub.ReplayDeadLetters, request, target.admin()).replayed
        if len(found) > batch_size:
            err.print(f"replayed {replayed:,} of {len(found):,}")
    return replayed


def _waiting(
    target: Target, stub: Stub, sequence: int, replay: dead_letter_service_pb2.ReplayDeadLettersRequest
) -> bool:
    """Whether the dead letter `sequence` is waiting, and matches the replay's channel and category."""
    request = dead_letter_service_pb2.ListDeadLettersRequest(
        channel=replay.channel, category=replay.category, page_size=1, page_token=str(sequence)
    )
    page = call(stub.ListDeadLetters, request, target.admin())
    return bool(page.dead_letters) and page.dead_letters[0].sequence == sequence


def _waiting_sequences(
    target: Target, stub: Stub, replay: dead_letter_service_pb2.ReplayDeadLettersRequest
) -> Iterator[int]:
    """The sequences of every dead letter waiting that matches the replay's channel and category, oldest first."""
    for page in pages(
        lambda token: call(
            stub.ListDeadLetters,
            dead_letter_service_pb2.ListDeadLettersRequest(
                channel=replay.channel, category=replay.category, page_size=1000, page_token=token
            ),
            target.admin(),
        )
    ):
        yield from (d.sequence for d in page.dead_letters)


@cli.command("unprocessed")
def dlq_unprocessed(
    ctx: typer.Context,
    consumer: Annotated[str, typer.Option(help="only this consumer's, e.g. router-notification")] = "",
    limit: Limit = 100,
    as_json: Json = False,
) -> None:
    """Messages a stage could not handle after its last retry: which consumer, from which subject, the last error."""
    target: Target = ctx.obj
    request = dead_letter_service_pb2.ListUnprocessedMessagesRequest(consumer=consumer, page_size=limit)
    with target.channel(target.adapters) as ch:
        reply = call(Stub(ch).ListUnprocessedMessages, request, target.admin())
    if as_json:
        print_json(reply)
        return
    table = Table("seq", "consumer", "subject", "deliveries", "bytes", "reason", "died")
    for m in reply.unprocessed_messages:
        table.add_row(
            str(m.sequence), m.consumer, m.subject, str(m.deliveries), str(m.size_bytes), m.reason, when(m.dead_time)
        )
    show(table)
    if reply.next_page_token:
        out.print(f"(more after seq {reply.next_page_token})")


@cli.command("replay-unprocessed")
def dlq_replay_unprocessed(
    ctx: typer.Context,
    sequences: Annotated[
        list[int] | None,
        typer.Argument(help="messages to replay, by the seq `dlq unprocessed` shows; none = all of --consumer"),
    ] = None,
    consumer: Annotated[str, typer.Option(help="only this consumer's")] = "",
) -> None:
    """Put unprocessed messages back on their subject, with a fresh retry budget, once the cause is fixed."""
    target: Target = ctx.obj
    request = dead_letter_service_pb2.ReplayUnprocessedMessagesRequest(sequences=sequences or [], consumer=consumer)
    with target.channel(target.adapters) as ch:
        reply = call(Stub(ch).ReplayUnprocessedMessages, request, target.admin())
    out.print(f"replayed {reply.replayed}")
