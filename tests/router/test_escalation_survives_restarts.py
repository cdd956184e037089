"""An escalation's timers live in NATS, not in any process: with every herald binary SIGKILLed and restarted
while the sms step waits, it still goes out on time to the user who did not read, and not to the one who did."""

import asyncio
import signal
import time
from pathlib import Path

from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg

from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.conftest import running_mesh
from tests.helpers.client import all_final
from tests.helpers.databases import default_backend
from tests.router.escalation import escalating_template, read_inbox, sms_account, sms_arrival, user_with_phone

S = common_pb2
DELAY = 20


async def test_escalation_reaches_sms_on_time_across_a_sigkill_of_every_binary(
    tmp_path: Path, twilio: FakeTwilio
) -> None:
    async with running_mesh(tmp_path, default_backend()) as (mesh, herald):
        _, app = await herald.create_app(("inbox", "sms"))
        template = await escalating_template(herald, DELAY)
        reader_phone, ignorer_phone = "+8613800138003", "+8613800138004"
        reader, ignorer = await user_with_phone(herald, reader_phone), await user_with_phone(herald, ignorer_phone)
        await sms_account(herald, twilio)
        started = time.time()
        reader_message, ignorer_message = [
            await herald.send(
                app, msg.SendRequest(template_id=template, recipients=[msg.Recipient(user_id=u)], variables={"n": "9"})
            )
            for u in (reader, ignorer)
        ]
        for message_id in (reader_message, ignorer_message):
            await herald.wait_message(app, message_id, lambda m: len(m.deliveries) == 2)

        for binary in mesh.binaries.values():
            assert await binary.stop(signal.SIGKILL) == -signal.SIGKILL
        for binary in mesh.binaries.values():
            binary.start()
        await asyncio.gather(*(b.wait_healthy() for b in mesh.binaries.values()))
        await read_inbox(herald, app, reader)
        assert time.time() < started + DELAY - 3, "everything restarted, and the item was read, before the sms was due"

        arrived = await sms_arrival(twilio, ignorer_phone, timeout=DELAY + 60)
        assert started + DELAY - 2 <= arrived <= started + DELAY + 2, arrived - started
        ignored = await herald.wait_message(app, ignorer_message, lambda m: all_final(m, 2))
        assert {d.channel: d.state for d in ignored.deliveries} == {
            "inbox": S.DELIVERY_STATE_SENT,
            "sms": S.DELIVERY_STATE_SENT,
        }
        read = await herald.wait_message(app, reader_message, lambda m: all_final(m, 2))
        assert {d.channel: d.state for d in read.deliveries} == {
            "inbox": S.DELIVERY_STATE_READ,
            "sms": S.DELIVERY_STATE_CANCELLED,
        }
        await asyncio.sleep(2)
        assert [r.form["To"] for r in twilio.received] == [ignorer_phone]
