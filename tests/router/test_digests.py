"""Digests: a user's sends of a digest template within its window become one delivery at the window's end,
listing every send; each other send's delivery says which delivery carried it; another digest key is another
digest; a user erased meanwhile receives none."""

import asyncio
import time
import uuid
from datetime import timedelta

from herald.v1 import common_pb2
from herald.v1 import directory_service_pb2 as directory
from herald.v1 import routing_service_pb2 as routing
from herald.v1 import status_service_pb2 as status

from herald.libs.timeutil import now, to_timestamp
from tests.helpers.client import Herald, all_final
from tests.router.digest import comment, digest_template, inbox

S = common_pb2
V = routing.ChannelVerdict
WINDOW = 4


async def test_five_sends_in_a_window_are_delivered_once_with_five_items(herald: Herald) -> None:
    _, app = await herald.create_app(("inbox",))
    template = await digest_template(herald, WINDOW)
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    started = time.time()
    sent = [await comment(herald, app, template, user_id, who) for who in ("ann", "bob", "cy", "di", "ed")]
    other_doc = await comment(herald, app, template, user_id, "fay", doc="budget")

    async with asyncio.timeout(WINDOW + 30):
        while len(await inbox(herald, app, user_id)) < 2:
            await asyncio.sleep(0.2)
    assert time.time() >= started + WINDOW - 1, "delivered before the window ended"
    await asyncio.sleep(2)
    items = await inbox(herald, app, user_id)
    by_subject = {i.title: i for i in items}
    assert sorted(by_subject) == ["1 comments on budget", "5 comments on plan"], by_subject
    assert sorted(by_subject["5 comments on plan"].body.split(";")[:-1]) == ["ann", "bob", "cy", "di", "ed"]
    assert by_subject["1 comments on budget"].message_id == other_doc

    carrier = await herald.wait_message(app, sent[0], lambda m: all_final(m))
    [delivery] = carrier.deliveries
    assert delivery.state in (S.DELIVERY_STATE_SENT, S.DELIVERY_STATE_DELIVERED)  # Sync above got it
    assert delivery.content.startswith("5 comments on plan")  # what search finds is what the user got
    for message_id in sent[1:]:
        message = await herald.wait_message(app, message_id, lambda m: all_final(m))
        [carried] = message.deliveries
        assert carried.state == S.DELIVERY_STATE_DIGESTED
        assert carried.reason == f"carried by the digest delivery {delivery.delivery_id} (5 items)"
    day = status.GetStatsRequest(
        start_time=to_timestamp(now() - timedelta(days=1)),
        end_time=to_timestamp(now() + timedelta(hours=1)),
        template_id=template,
    )
    [row] = (await herald.status.GetStats(day, metadata=app)).rows
    assert (row.sent, row.digested) == (2, 4)  # two digests went out, carrying four other sends


async def test_explain_says_a_send_would_wait_for_the_digest(herald: Herald) -> None:
    app_id, _ = await herald.create_app(("inbox",))
    template = await digest_template(herald, 600)
    explained = await herald.routing.ExplainRouting(
        routing.ExplainRoutingRequest(app_id=app_id, template_id=template, user_id="u-anyone"), metadata=herald.admin
    )
    [verdict] = explained.verdicts
    assert (verdict.outcome, verdict.delay.seconds) == (V.OUTCOME_DIGEST, 600)


async def test_a_user_erased_while_their_digest_collects_never_receives_it(herald: Herald) -> None:
    _, app = await herald.create_app(("inbox",))
    template = await digest_template(herald, WINDOW)
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    for who in ("ann", "bob"):
        collected = await comment(herald, app, template, user_id, who)
        await herald.wait_message(app, collected, lambda m: len(m.deliveries) == 1)

    await herald.directory.DeleteUser(directory.DeleteUserRequest(user_id=user_id), metadata=herald.admin)
    await asyncio.sleep(WINDOW + 6)
    assert await inbox(herald, app, user_id) == []
