"""`heraldctl topics`: an app's topics and their subscribers (served by the router): the app's own with
HERALD_API_KEY, or, with --app, any app's as an operator (HERALD_TOKEN or HERALD_ADMIN_TOKEN).

A subscriber file is streamed a chunk at a time, so a million user ids need not be in memory at once."""

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from google.protobuf import json_format
from herald.v1 import topic_service_pb2, topic_service_pb2_grpc
from rich.table import Table

from herald.tools.heraldctl.arguments import Json
from herald.tools.heraldctl.connection import Metadata, Target, call
from herald.tools.heraldctl.output import out, print_json, show, when
from herald.tools.heraldctl.paging import pages

cli = typer.Typer(
    name="topics",
    help="An app's topics and their subscribers (HERALD_API_KEY; or --app with an operator's token).",
    no_args_is_help=True,
)
TopicKey = Annotated[str, typer.Argument(help="the topic's key, e.g. release-notes")]
UserFile = Annotated[Path, typer.Argument(help="user ids, one per line ('-' = standard input)", allow_dash=True)]
AppId = Annotated[
    str, typer.Option("--app", help="the app whose topics, as an operator; unset = the app of HERALD_API_KEY")
]
TOPIC_CHUNK = 1000


def _as(target: Target, app_id: str) -> Metadata:
    return target.admin() if app_id else target.app()


@cli.command("create")
def topics_create(
    ctx: typer.Context,
    topic_key: TopicKey,
    name: Annotated[str, typer.Option(help="what people call it")] = "",
    app_id: AppId = "",
) -> None:
    """Create a topic of the app's, empty."""
    target: Target = ctx.obj
    with target.channel(target.router) as ch:
        topic = topic_service_pb2.Topic(topic_key=topic_key, name=name)
        call(
            topic_service_pb2_grpc.TopicServiceStub(ch).CreateTopic,
            topic_service_pb2.CreateTopicRequest(topic=topic, app_id=app_id),
            _as(target, app_id),
        )
    out.print(f"{topic_key}: created", soft_wrap=True)


@cli.command("list")
def topics_list(ctx: typer.Context, app_id: AppId = "", as_json: Json = False) -> None:
    """The app's topics and how many subscribe to each."""
    target: Target = ctx.obj
    with target.channel(target.router) as ch:
        stub = topic_service_pb2_grpc.TopicServiceStub(ch)
        topics = [
            topic
            for page in pages(
                lambda token: call(
                    stub.ListTopics,
                    topic_service_pb2.ListTopicsRequest(page_size=1000, page_token=token, app_id=app_id),
                    _as(target, app_id),
                )
            )
            for topic in page.topics
        ]
    if as_json:
        print_json({"topics": [json_format.MessageToDict(t, preserving_proto_field_name=True) for t in topics]})
        return
    table = Table("topic", "name", "subscribers", "created")
    for topic in topics:
        table.add_row(topic.topic_key, topic.name, str(topic.subscriber_count), when(topic.create_time))
    show(table)


@cli.command("subscribe")
def topics_subscribe(ctx: typer.Context, topic_key: TopicKey, users: UserFile, app_id: AppId = "") -> None:
    """Subscribe the users in the file (streamed a thousand at a time, however many)."""
    target: Target = ctx.obj
    requests = (
        topic_service_pb2.AddSubscribersRequest(topic_key=topic_key, user_ids=c, app_id=app_id)
        for c in _user_chunks(users)
    )
    with target.channel(target.router) as ch:
        reply = call(topic_service_pb2_grpc.TopicServiceStub(ch).AddSubscribers, requests, _as(target, app_id))
    out.print(f"{topic_key}: {reply.added_count} subscribed ({reply.subscriber_count} in all)", soft_wrap=True)


@cli.command("unsubscribe")
def topics_unsubscribe(ctx: typer.Context, topic_key: TopicKey, users: UserFile, app_id: AppId = "") -> None:
    """Unsubscribe the users in the file."""
    target: Target = ctx.obj
    requests = (
        topic_service_pb2.RemoveSubscribersRequest(topic_key=topic_key, user_ids=c, app_id=app_id)
        for c in _user_chunks(users)
    )
    with target.channel(target.router) as ch:
        reply = call(topic_service_pb2_grpc.TopicServiceStub(ch).RemoveSubscribers, requests, _as(target, app_id))
    out.print(f"{topic_key}: {reply.removed_count} unsubscribed ({reply.subscriber_count} in all)", soft_wrap=True)


@cli.command("delete")
def topics_delete(ctx: typer.Context, topic_key: TopicKey, app_id: AppId = "") -> None:
    """Delete a topic and its subscriptions (messages already sent to it are still delivered)."""
    target: Target = ctx.obj
    with target.channel(target.router) as ch:
        request = topic_service_pb2.DeleteTopicRequest(topic_key=topic_key, app_id=app_id)
        call(topic_service_pb2_grpc.TopicServiceStub(ch).DeleteTopic, request, _as(target, app_id))
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
