"""Topics: an app's own groups of users, filled and emptied in bulk by streams, and a Send to a topic reaching
exactly its subscribers, each through their own preferences."""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import nats
from herald.v1 import common_pb2, directory_service_pb2, events_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import status_service_pb2 as status
from herald.v1 import topic_service_pb2 as pb

from devmesh.mesh import Mesh
from herald.libs import subjects
from tests.conftest import running_mesh
from tests.helpers.client import Herald, Metadata, bad_fields, rpc_error
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2
SUBSCRIBERS = 20_000
# The fan-out takes this machine ten seconds and more: a send queued behind it would wait that long; one beside it
# arrives within a few seconds even while the suite's other workers share the two cores.
BESIDE_WITHIN = 5.0
CHUNK = 1000


async def _adding(topic_key: str, user_ids: list[str]) -> AsyncIterator[pb.AddSubscribersRequest]:
    for start in range(0, len(user_ids), CHUNK):
        yield pb.AddSubscribersRequest(topic_key=topic_key, user_ids=user_ids[start : start + CHUNK])


async def _removing(topic_key: str, user_ids: list[str]) -> AsyncIterator[pb.RemoveSubscribersRequest]:
    for start in range(0, len(user_ids), CHUNK):
        yield pb.RemoveSubscribersRequest(topic_key=topic_key, user_ids=user_ids[start : start + CHUNK])


async def _deliveries(herald: Herald, app: Metadata, message_id: str) -> dict[str, status.Delivery]:
    """Every delivery of the message, by user, page by page."""
    found: dict[str, status.Delivery] = {}
    token = ""
    while True:
        page = await herald.status.GetMessage(
            status.GetMessageRequest(message_id=message_id, page_size=1000, page_token=token), metadata=app
        )
        found.update((d.user_id, d) for d in page.deliveries)
        if not (token := page.next_page_token):
            return found


def _settled(message: status.Message, count: int) -> bool:
    waiting = (S.DELIVERY_STATE_PENDING, S.DELIVERY_STATE_SCHEDULED)
    return message.delivery_count == count and not any(
        c.count for c in message.delivery_state_counts if c.state in waiting
    )


async def test_a_send_to_a_topic_reaches_exactly_its_subscribers(tmp_path: Path, sink: WebhookSink) -> None:
    """In a mesh of its own on SQLite: 20,000 deliveries cost CI a minute more on PostgreSQL, whose topic queries
    the other tests here run too."""
    async with running_mesh(tmp_path, "sqlite") as (_, herald):
        await _send_to_a_topic_of_twenty_thousand(herald, sink)


async def _send_to_a_topic_of_twenty_thousand(herald: Herald, sink: WebhookSink) -> None:
    _, app = await herald.create_app(("inbox",))
    template = await herald.create_template({"inbox": "release {{ version }}"})
    topic_key = f"releases-{uuid.uuid4().hex[:6]}"
    await herald.topics.CreateTopic(pb.CreateTopicRequest(topic=pb.Topic(topic_key=topic_key)), metadata=app)
    users = [f"u-{n:05d}-{uuid.uuid4().hex[:4]}" for n in range(SUBSCRIBERS)]
    added = await herald.topics.AddSubscribers(_adding(topic_key, users), metadata=app)
    assert (added.added_count, added.subscriber_count) == (SUBSCRIBERS, SUBSCRIBERS)
    left, opted_out = users[::40], users[1::200]  # 500 unsubscribe; 100 opt out of notifications on the inbox
    removed = await herald.topics.RemoveSubscribers(_removing(topic_key, left), metadata=app)
    assert (removed.removed_count, removed.subscriber_count) == (len(left), SUBSCRIBERS - len(left))
    await asyncio.gather(
        *(
            herald.directory.SetPreference(
                directory_service_pb2.SetPreferenceRequest(
                    user_id=u, category=S.CATEGORY_NOTIFICATION, channel="inbox", opted_out=True
                ),
                metadata=herald.admin,
            )
            for u in opted_out
        )
    )

    message_id = await herald.send(
        app, msg.SendRequest(template_id=template, topic=topic_key, variables={"version": "2.4"})
    )
    # Another app's message of the same category, sent while the fan-out's parts are routed, is not held behind
    # them: the parts have a lane of their own.
    _, other = await herald.create_app(("webhook",))
    plain = await herald.create_template({"webhook": "{}"})
    path = f"/beside-topic/{uuid.uuid4().hex[:8]}"
    await herald.wait_message(app, message_id, lambda m: m.delivery_count >= 1000, timeout=120)
    started = time.monotonic()
    await herald.send(
        other, msg.SendRequest(template_id=plain, recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})])
    )
    await sink.wait_for(path, timeout=120)
    waited = time.monotonic() - started
    assert waited < BESIDE_WITHIN, f"another app's send waited {waited:.1f}s behind the topic's fan-out"
    subscribed = SUBSCRIBERS - len(left)
    await herald.wait_message(app, message_id, lambda m: _settled(m, subscribed), timeout=300)
    deliveries = await _deliveries(herald, app, message_id)
    assert deliveries.keys() == set(users) - set(left)
    sent = {u for u, d in deliveries.items() if d.state == S.DELIVERY_STATE_SENT}
    assert sent == set(users) - set(left) - set(opted_out)
    assert all(
        deliveries[u].state == S.DELIVERY_STATE_SUPPRESSED and "opted out" in deliveries[u].reason for u in opted_out
    )
    assert deliveries[users[2]].content == "release 2.4"


async def _changed(mesh: Mesh, subject: str, topic_key: str, expected: int) -> list[str]:
    """The user ids the topic's events on `subject` name, once they name `expected` (and a moment more)."""
    nc = await nats.connect(mesh.nats_url)
    try:
        sub = await nc.jetstream().subscribe(subject, ordered_consumer=True)
        found: list[str] = []
        async with asyncio.timeout(30):
            while len(found) < expected:
                event = events_pb2.TopicSubscriptionEvent.FromString((await sub.next_msg(timeout=30)).data)
                found += event.user_ids if event.topic_key == topic_key else []
        with contextlib.suppress(nats.errors.TimeoutError):  # nothing more than expected
            while True:
                event = events_pb2.TopicSubscriptionEvent.FromString((await sub.next_msg(timeout=1)).data)
                found += event.user_ids if event.topic_key == topic_key else []
        return found
    finally:
        await nc.close()


async def test_topics_are_the_apps_own_and_changes_are_events(herald: Herald, shared_mesh: tuple[Mesh, Herald]) -> None:
    _, app = await herald.create_app(("inbox",))
    _, other_app = await herald.create_app(("inbox",))
    topic_key = f"news-{uuid.uuid4().hex[:6]}"
    created = await herald.topics.CreateTopic(
        pb.CreateTopicRequest(topic=pb.Topic(topic_key=topic_key, name="News")), metadata=app
    )
    assert (created.topic_key, created.name, created.subscriber_count) == (topic_key, "News", 0)
    again = await rpc_error(herald.topics.CreateTopic(pb.CreateTopicRequest(topic=created), metadata=app))
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS
    bad = await rpc_error(
        herald.topics.CreateTopic(pb.CreateTopicRequest(topic=pb.Topic(topic_key="Not OK")), metadata=app)
    )
    assert "topic.topic_key" in bad_fields(bad)
    theirs = await rpc_error(herald.topics.GetTopic(pb.GetTopicRequest(topic_key=topic_key), metadata=other_app))
    assert theirs.code() == grpc.StatusCode.NOT_FOUND

    await herald.topics.AddSubscribers(_adding(topic_key, ["ann", "bob", "cy"]), metadata=app)
    await herald.topics.AddSubscribers(_adding(topic_key, ["bob"]), metadata=app)  # already: no change, no event
    await herald.topics.RemoveSubscribers(_removing(topic_key, ["cy", "nobody"]), metadata=app)
    page = await herald.topics.ListSubscribers(pb.ListSubscribersRequest(topic_key=topic_key), metadata=app)
    assert list(page.user_ids) == ["ann", "bob"]
    listed = await herald.topics.ListTopics(pb.ListTopicsRequest(), metadata=app)
    assert [(t.topic_key, t.subscriber_count) for t in listed.topics] == [(topic_key, 2)]

    mesh, _ = shared_mesh
    assert sorted(await _changed(mesh, subjects.TOPIC_SUBSCRIBED, topic_key, 3)) == ["ann", "bob", "cy"]
    assert await _changed(mesh, subjects.TOPIC_UNSUBSCRIBED, topic_key, 1) == ["cy"]

    template = await herald.create_template({"inbox": "hello"})
    both = await rpc_error(
        herald.messages.Send(
            msg.SendRequest(template_id=template, topic=topic_key, recipients=[msg.Recipient(user_id="ann")]),
            metadata=app,
        )
    )
    assert "recipients" in bad_fields(both)
    await herald.topics.DeleteTopic(pb.DeleteTopicRequest(topic_key=topic_key), metadata=app)
    gone = await rpc_error(herald.messages.Send(msg.SendRequest(template_id=template, topic=topic_key), metadata=app))
    assert gone.code() == grpc.StatusCode.NOT_FOUND
