"""Every timer herald keeps lives in JetStream, not in a process: with every herald binary SIGKILLed and the NATS
server restarted while they wait, a message scheduled ahead is delivered once and on time, an escalation step
reaches sms on time for the user who did not read (and not for the one who did), and a digest collects the sends
from before and after the restart into one delivery. One restart for all three: each mesh restart costs CI time."""

import asyncio
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from herald.v1 import common_pb2, status_service_pb2
from herald.v1 import message_service_pb2 as msg

from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.conftest import running_mesh
from tests.helpers.client import Herald, Metadata, all_final
from tests.helpers.databases import default_backend
from tests.helpers.webhook_sink import WebhookSink
from tests.router.digest import comment, digest_template, inbox
from tests.router.escalation import escalating_template, read_inbox, sms_account, sms_arrival, user_with_phone

# Whole meshes started, killed or kept waiting: run first, beside the rest (tests/conftest.py).
pytestmark = pytest.mark.slow

S = common_pb2
# Far enough ahead that a SIGKILL and restart of everything fits before the first of them on a busy machine (in CI,
# with six test workers, the restart and the reads before the first took 70 s once).
ESCALATE_AFTER, DIGEST_WINDOW, SEND_AFTER = 90, 93, 100
# Never early; at most this many seconds late, the router and adapters sharing two busy cores with other tests.
LATE = 5


async def test_schedules_escalations_and_digests_survive_a_restart_of_everything(
    tmp_path: Path, sink: WebhookSink, twilio: FakeTwilio
) -> None:
    async with running_mesh(tmp_path, default_backend()) as (mesh, herald):
        assert mesh.nats is not None
        _, app = await herald.create_app(("webhook", "inbox", "sms"))
        webhook_template = await herald.create_template({"webhook": "{}"})
        escalating = await escalating_template(herald, ESCALATE_AFTER)
        digesting = await digest_template(herald, DIGEST_WINDOW)
        await sms_account(herald, twilio)
        reader_phone, ignorer_phone = "+8613800138003", "+8613800138004"
        reader, ignorer = await user_with_phone(herald, reader_phone), await user_with_phone(herald, ignorer_phone)
        commenter_target = f"u-{uuid.uuid4().hex[:8]}"
        path = f"/restart/{uuid.uuid4().hex[:8]}"

        started = time.time()
        send_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=SEND_AFTER)
        request = msg.SendRequest(
            template_id=webhook_template, recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})]
        )
        request.send_at.FromDatetime(send_at)
        scheduled = await herald.send(app, request)
        reader_message, ignorer_message = [
            await herald.send(
                app,
                msg.SendRequest(template_id=escalating, recipients=[msg.Recipient(user_id=u)], variables={"n": "9"}),
            )
            for u in (reader, ignorer)
        ]
        comments = [await comment(herald, app, digesting, commenter_target, who) for who in ("ann", "bob", "cy")]
        expected = {scheduled: 1, reader_message: 2, ignorer_message: 2} | dict.fromkeys(comments, 1)
        for message_id, count in expected.items():
            await herald.wait_message(app, message_id, partial(_has, count=count))

        for binary in mesh.binaries.values():
            assert await binary.stop(signal.SIGKILL) == -signal.SIGKILL
        await mesh.nats.stop()
        await asyncio.sleep(2)
        await mesh.nats.start()
        for binary in mesh.binaries.values():
            binary.start()
        await asyncio.gather(*(b.wait_healthy() for b in mesh.binaries.values()))
        await read_inbox(herald, app, reader)
        comments += [await comment(herald, app, digesting, commenter_target, who) for who in ("di", "ed")]
        assert time.time() < started + ESCALATE_AFTER - 3, "everything restarted, and the item was read, in time"

        async def sms_on_time() -> None:
            arrived = await sms_arrival(twilio, ignorer_phone, timeout=ESCALATE_AFTER + 60)
            assert started + ESCALATE_AFTER - 2 <= arrived <= started + ESCALATE_AFTER + LATE, arrived - started

        async def webhook_on_time() -> None:
            [hit] = await sink.wait_for(path, timeout=120)
            arrived = datetime.now(UTC)
            assert send_at - timedelta(seconds=2) <= arrived <= send_at + timedelta(seconds=LATE), (send_at, arrived)
            assert hit.signature_ok

        async def one_digest() -> None:
            async with asyncio.timeout(DIGEST_WINDOW + 60):
                while not await inbox(herald, app, commenter_target):
                    await asyncio.sleep(0.2)

        await asyncio.gather(sms_on_time(), webhook_on_time(), one_digest())
        await asyncio.sleep(2)  # time for a second anything, if there were one

        assert [r.form["To"] for r in twilio.received] == [ignorer_phone]
        await _states(herald, app, ignorer_message, {"inbox": S.DELIVERY_STATE_SENT, "sms": S.DELIVERY_STATE_SENT})
        await _states(herald, app, reader_message, {"inbox": S.DELIVERY_STATE_READ, "sms": S.DELIVERY_STATE_CANCELLED})
        assert len(sink.for_path(path)) == 1
        await _states(herald, app, scheduled, {"webhook": S.DELIVERY_STATE_SENT})
        [item] = await inbox(herald, app, commenter_target)
        assert item.title == "5 comments on plan"
        assert sorted(item.body.split(";")[:-1]) == ["ann", "bob", "cy", "di", "ed"]
        assert item.message_id == comments[0]


def _has(message: status_service_pb2.Message, count: int) -> bool:
    return len(message.deliveries) == count


async def _states(herald: Herald, app: Metadata, message_id: str, expected: dict[str, int]) -> None:
    message = await herald.wait_message(app, message_id, lambda m: all_final(m, len(expected)))
    assert {d.channel: d.state for d in message.deliveries} == expected
