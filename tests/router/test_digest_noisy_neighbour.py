"""A large digest is no noisy neighbour: one app's thousand sends of 4 KB into one digest leave another app's
send of the same category delivered at once, every send of the digest ends in an answer, and a digest fired
over 500 sends of 3 KB carries all of them, however many of them its delivery lists."""

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from herald.v1 import common_pb2, status_service_pb2
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, Metadata, all_final
from tests.helpers.webhook_sink import WebhookSink
from tests.router.digest import digest_template, inbox

S = common_pb2
BATCH = 250
# GetMessage calls in flight at once while the test reads what became of every send.
READERS = 8


async def _send_batches(
    herald: Herald, app: Metadata, template: str, user_id: str, sends: int, size: int
) -> tuple[list[str], int]:
    """`sends` sends with a variable of `size` characters, in SendBatch calls of BATCH, as a caller would: the
    accepted message ids and how many intake refused."""
    accepted, refused = [], 0
    for start in range(0, sends, BATCH):
        requests = [
            msg.SendRequest(
                template_id=template,
                recipients=[msg.Recipient(user_id=user_id)],
                variables={"who": f"w{i}", "doc": "plan", "note": f"{i}".ljust(size, "n")},
            )
            for i in range(start, min(start + BATCH, sends))
        ]
        reply = await herald.messages.SendBatch(msg.SendBatchRequest(requests=requests), metadata=app)
        for result in reply.results:
            if result.HasField("response"):
                accepted.append(result.response.message_id)
            else:
                refused += 1
    return accepted, refused


async def _each_message(
    herald: Herald,
    app: Metadata,
    message_ids: list[str],
    done: Callable[[status_service_pb2.Message], bool],
    timeout: float,
) -> list[status_service_pb2.Message]:
    readers = asyncio.Semaphore(READERS)

    async def one(message_id: str) -> status_service_pb2.Message:
        async with readers:
            return await herald.wait_message(app, message_id, done, timeout=timeout)

    return list(await asyncio.gather(*(one(m) for m in message_ids)))


def _collected(message: status_service_pb2.Message) -> bool:
    """Its one delivery waits in a digest, saying which."""
    return len(message.deliveries) == 1 and message.deliveries[0].reason.startswith("digest: ")


# It times another app's Send against a digest's load: run alone, after the rest (Makefile, `make test`).
@pytest.mark.serial
async def test_a_thousand_large_digest_sends_leave_another_apps_send_delivered_at_once(
    herald: Herald, sink: WebhookSink
) -> None:
    _, flooding = await herald.create_app(("inbox",))
    digesting = await digest_template(herald, 15 * 60)
    _, other = await herald.create_app(("webhook",))
    plain = await herald.create_template({"webhook": "{}"})
    path = f"/neighbour/{uuid.uuid4().hex[:8]}"

    accepted, refused = await _send_batches(herald, flooding, digesting, f"u-{uuid.uuid4().hex[:8]}", 1000, 4000)
    started = time.monotonic()
    await herald.send(
        other, msg.SendRequest(template_id=plain, recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})])
    )
    await sink.wait_for(path, timeout=60)
    waited = time.monotonic() - started
    assert waited < 2, f"another app's send waited {waited:.1f}s behind the digest"

    assert len(accepted) + refused == 1000
    collected = await _each_message(herald, flooding, accepted, _collected, timeout=120)
    assert all(m.deliveries[0].state == S.DELIVERY_STATE_SCHEDULED for m in collected)
    carriers = {m.deliveries[0].delivery_id for m in collected if "sent as this delivery" in m.deliveries[0].reason}
    assert len(carriers) == 1, carriers  # one digest, opened by one of them
    [carrier] = carriers
    assert all(carrier in m.deliveries[0].reason for m in collected if m.deliveries[0].delivery_id != carrier)


async def test_a_digest_of_five_hundred_large_sends_carries_every_one(herald: Herald) -> None:
    window = 20
    _, app = await herald.create_app(("inbox",))
    template = await digest_template(herald, window)
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    accepted, refused = await _send_batches(herald, app, template, user_id, 500, 3000)
    assert (len(accepted), refused) == (500, 0)

    async with asyncio.timeout(window + 90):
        while not (items := await inbox(herald, app, user_id)):
            await asyncio.sleep(0.5)
    [item] = items
    assert item.title == "500 comments on plan"
    listed = item.body.split(";")[:-1]
    assert 0 < len(listed) <= 500 and len(set(listed)) == len(listed)

    final = await _each_message(herald, app, accepted, all_final, timeout=90)
    [carrier] = [m.deliveries[0] for m in final if m.deliveries[0].state != S.DELIVERY_STATE_DIGESTED]
    assert carrier.state in (S.DELIVERY_STATE_SENT, S.DELIVERY_STATE_DELIVERED)
    carried = f"carried by the digest delivery {carrier.delivery_id} (500 items)"
    assert sum(m.deliveries[0].reason == carried for m in final) == 499
