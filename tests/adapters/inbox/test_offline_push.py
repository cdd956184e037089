"""Offline push: a user whose app is not watching the inbox gets one APNs push for a burst of new items, with the
unread count as its badge; a user with a live Subscribe stream gets none, nor does one who opted out of push."""

import asyncio
import uuid

import pytest
from herald.v1 import common_pb2, directory_service_pb2, inbox_service_pb2
from herald.v1 import message_service_pb2 as msg

from herald.services.adapters.inbox.wake import WINDOW
from tests.adapters.channels.apns.fake_apns import FakeApns
from tests.adapters.inbox.timeline import wait_for_items
from tests.adapters.push import apns_account, pushes_to
from tests.helpers.client import Herald, all_final

# Whole meshes started, killed or kept waiting: run first, beside the rest (tests/conftest.py).
pytestmark = pytest.mark.slow

S = common_pb2


async def _user(herald: Herald, device: str) -> str:
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    user = directory_service_pb2.User(user_id=user_id, addresses={"apns": device})
    await herald.directory.UpsertUser(directory_service_pb2.UpsertUserRequest(user=user), metadata=herald.admin)
    return user_id


async def test_one_push_for_a_burst_when_nobody_watches_and_none_for_a_watcher(herald: Herald, apns: FakeApns) -> None:
    _, app = await herald.create_app(("inbox", "apns"))
    template = await herald.create_template({"inbox": "item {{ n }}", "apns": "{{ n }}"})
    away_device, watching_device, opted_out_device = "a1" * 32, "b2" * 32, "c3" * 32
    away, watching, opted_out = [await _user(herald, d) for d in (away_device, watching_device, opted_out_device)]
    await herald.directory.SetPreference(
        directory_service_pb2.SetPreferenceRequest(
            user_id=opted_out, category=S.CATEGORY_NOTIFICATION, channel="apns", opted_out=True
        ),
        metadata=herald.admin,
    )
    stream = herald.inbox.Subscribe(inbox_service_pb2.SubscribeRequest(user_id=watching), metadata=app)
    await asyncio.sleep(1)  # the stream is listening before the items arrive
    async with apns_account(herald, apns):
        sent = []
        for n in range(3):  # three quick Sends, each its own message, to the inbox only
            sent += await asyncio.gather(
                *(
                    herald.send(
                        app,
                        msg.SendRequest(
                            template_id=template,
                            recipients=[msg.Recipient(user_id=u)],
                            variables={"n": str(n)},
                            channels=["inbox"],
                        ),
                    )
                    for u in (away, watching, opted_out)
                )
            )
        for user_id in (away, watching, opted_out):
            await wait_for_items(herald, app, user_id, 3)
        assert [(await asyncio.wait_for(stream.read(), 10)).seq for _ in range(3)] == [1, 2, 3]

        async with asyncio.timeout(30):
            while not pushes_to(apns, away_device):
                await asyncio.sleep(0.1)
        await asyncio.sleep(WINDOW.total_seconds() + 3)  # long enough for a second push, if there were one
    stream.cancel()

    [push] = pushes_to(apns, away_device)
    aps = push["aps"]
    assert isinstance(aps, dict)
    assert aps["badge"] == 3
    assert aps["alert"] == {"title": "", "body": "item 0"}  # what the first unseen item says
    assert pushes_to(apns, watching_device) == []
    assert pushes_to(apns, opted_out_device) == []
    # The push is a delivery of the message whose item set it off, beside that item.
    first = await herald.wait_message(app, sent[0], lambda m: len(m.deliveries) == 2 and all_final(m, 2))
    assert sorted((d.channel, d.state) for d in first.deliveries) == [
        ("apns", S.DELIVERY_STATE_SENT),
        ("inbox", S.DELIVERY_STATE_SENT),
    ]
