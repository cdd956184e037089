"""Whatever a caller puts in a message, it is refused at the door - INVALID_ARGUMENT naming the field - or it
reaches a final state through every stage within a minute; no stage gives up on it (dead-letters it unprocessed)
or retries it for ever. Every value issue 15 found wedging a stage is sent for real, then a hypothesis run of
recipients, addresses and variables of arbitrary text."""

import asyncio
import time

import grpc
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from devmesh.mesh import SERVICES, Mesh
from tests.helpers.client import Herald, Metadata, all_final, bad_fields
from tests.helpers.metrics import scrape, total
from tests.helpers.webhook_sink import WebhookSink

FINAL_WITHIN = 60.0
GENERATED = 150
CHANNELS = ("webhook", "inbox")

text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=190, max_size=2100),
    st.sampled_from(["", "\x00", "a\x00b", "é" * 201, "x" * 4000, "\r\n", "{{ 7 * 7 }}", "%40", "\\"]),
)


def _malformed(sink: WebhookSink) -> list[msg.Recipient]:
    """The values issue 15 saw retried for ever, each in a message of its own."""
    hook = sink.url("/ends")
    return [
        msg.Recipient(user_id="u\x00", addresses={"webhook": hook}),
        msg.Recipient(user_id="u-long-inbox", addresses={"inbox": "u" * 201}),
        msg.Recipient(addresses={"inbox": "u-1"}, variables={"code": "a\x00b"}),
        msg.Recipient(addresses={"webhook": hook}, variables={"code": "x" * 4000}),
        msg.Recipient(addresses={"webhook": "http://127.0.0.1\\evil.example/"}),
        msg.Recipient(addresses={"webhook": "http://exa\r\nmple.com/"}),
        msg.Recipient(addresses={"webhook": "http://127.0.0.1:99999/"}),
        msg.Recipient(addresses={"webhook": "http://[::1/"}),
        msg.Recipient(user_id="x" * 201, addresses={"webhook": hook}),
    ]


def _generated(sink: WebhookSink) -> list[msg.Recipient]:
    """Recipients drawn by hypothesis (its bias to edge cases: empty, huge, control characters, surrogates'
    neighbours); the webhook address is arbitrary text or the sink's with arbitrary text after it."""
    hook = sink.url("/ends/")
    # Half wild, half what intake takes, so that as many arbitrary values travel through the stages as stop at
    # the door.
    plain = st.text(min_size=1, max_size=60)
    addresses = st.fixed_dictionaries(
        {},
        optional={
            "webhook": st.one_of(text, st.one_of(text, plain).map(lambda tail: hook + tail)),
            "inbox": st.one_of(text, plain),
        },
    )
    names = st.one_of(text, st.from_regex(r"\A[a-z_][a-z0-9_]{0,15}\Z"))
    recipients = st.builds(
        msg.Recipient,
        user_id=st.one_of(text, plain),
        addresses=addresses,
        variables=st.dictionaries(names, text, max_size=4),
    )
    drawn: list[msg.Recipient] = []

    @settings(
        max_examples=GENERATED,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(recipients)
    def draw(recipient: msg.Recipient) -> None:
        drawn.append(recipient)

    draw()
    return drawn


async def _unprocessed(mesh: Mesh) -> float:
    return sum([total(await scrape(mesh.metrics_url(s)), "herald_unprocessed_messages_total") for s in SERVICES])


async def _send(herald: Herald, app: Metadata, template: str, recipient: msg.Recipient) -> str | None:
    """The message id, or None when intake refused it as it must: INVALID_ARGUMENT naming the fields at fault."""
    request = msg.SendRequest(template_id=template, recipients=[recipient], variables={"code": "7"})
    try:
        return str((await herald.messages.Send(request, metadata=app)).message_id)
    except grpc.aio.AioRpcError as e:
        refusal = e
    assert refusal.code() == grpc.StatusCode.INVALID_ARGUMENT, (recipient, refusal.code(), refusal.details())
    assert bad_fields(refusal), (recipient, refusal.details())
    return None


async def test_every_message_is_refused_or_ends_within_a_minute(
    shared_mesh: tuple[Mesh, Herald], sink: WebhookSink
) -> None:
    mesh, herald = shared_mesh
    _, app = await herald.create_app(CHANNELS)
    template = await herald.create_template({"webhook": '{"code": "{{ code }}"}', "inbox": "your code {{ code }}"})
    unprocessed_before = await _unprocessed(mesh)
    recipients = _malformed(sink) + _generated(sink)
    accepted = {}
    for recipient in recipients:
        if (message_id := await _send(herald, app, template, recipient)) is not None:
            accepted[message_id] = recipient
    assert accepted, "some of the recipients are fine and must be accepted"

    deadline = time.monotonic() + FINAL_WITHIN
    for message_id, recipient in accepted.items():
        try:
            await herald.wait_message(app, message_id, all_final, timeout=max(deadline - time.monotonic(), 1))
        except TimeoutError:
            raise AssertionError(f"{message_id} to {recipient!r} did not end within {FINAL_WITHIN:.0f}s") from None
    async with asyncio.timeout(10):
        assert await _unprocessed(mesh) == unprocessed_before, "a stage gave up on a message"
    states = {
        c.state
        for message_id in accepted
        for c in (await herald.wait_message(app, message_id, all_final)).delivery_state_counts
    }
    assert states & {common_pb2.DELIVERY_STATE_SENT, common_pb2.DELIVERY_STATE_DELIVERED}, "some were delivered"
