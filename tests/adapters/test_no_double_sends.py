"""SIGKILL herald-adapters again and again during a run of 5,000 deliveries: nothing is lost, and no delivery
reaches its receiver as a second delivery.

A call cut off by the kill may have reached the provider, so after the restart herald either calls again with
the same idempotency key (providers that de-duplicate on it, like webhook receivers) or, for providers that
take no key, does not call again at all: the delivery says "outcome unknown" and waits as a dead letter.
"""

import asyncio
import signal
import uuid
from collections import Counter
from pathlib import Path

import pytest
from herald.v1 import admin_service_pb2, common_pb2
from herald.v1 import dead_letter_service_pb2 as dlq
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as pb

from herald.libs.bus.grouping import MAX_GROUP_RECORDS
from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.conftest import PROVIDER_ENV, running_mesh
from tests.helpers.client import all_final
from tests.helpers.databases import default_backend
from tests.helpers.webhook_sink import Received, WebhookSink

# Whole meshes started, killed or kept waiting: run first, beside the rest (tests/conftest.py).
pytestmark = pytest.mark.slow

S = common_pb2
MESSAGES = 100
RECIPIENTS = 50
# The run is sent in chunks of an eighth; at each SIGKILL, the deliveries of about one chunk have not arrived yet.
CHUNKS = 8
# How many deliveries have arrived at each SIGKILL: five kills within the first three fifths of the run.
KILL_POINTS = [MESSAGES * RECIPIENTS * k // CHUNKS for k in range(1, 6)]


@pytest.mark.slow(minutes=1.5)
async def test_sigkill_during_5000_deliveries_loses_none_and_repeats_only_under_the_same_key(
    tmp_path: Path, sink: WebhookSink
) -> None:
    run = uuid.uuid4().hex[:6]
    async with running_mesh(tmp_path, default_backend()) as (mesh, herald):
        _, app = await herald.create_app()
        template = await herald.create_template({"webhook": '{"n": "{{ n }}"}'})
        adapters = mesh.binaries["adapters"]

        def received() -> list[Received]:
            """This run's requests, in the order they arrived."""
            return [r for r in sink.received if r.path.startswith(f"/kill-{run}/")]

        def arrived() -> set[str]:
            return {r.headers["Idempotency-Key"] for r in received()}

        message_ids: list[str] = []

        async def send(chunk: int) -> None:
            for i in range(MESSAGES * chunk // CHUNKS, MESSAGES * (chunk + 1) // CHUNKS):
                recipients = [
                    msg.Recipient(addresses={"webhook": sink.url(f"/kill-{run}/{i}/{r}")}) for r in range(RECIPIENTS)
                ]
                request = msg.SendRequest(template_id=template, recipients=recipients, variables={"n": str(i)})
                message_ids.append(await herald.send(app, request))

        # Kill at fixed points of the run's progress, not at random times, and send the rest of the run only after
        # each kill: however fast this machine delivers, every kill lands with a chunk in flight and thousands of
        # deliveries still to come.
        await send(0)
        await send(1)
        async with asyncio.timeout(240):
            for kill, point in enumerate(KILL_POINTS):
                while len(arrived()) < point:
                    await asyncio.sleep(0.05)
                assert await adapters.stop(signal.SIGKILL) == -signal.SIGKILL
                killed_after = len(received())
                adapters.start()
                await adapters.wait_healthy()
                await send(kill + 2)
        for chunk in range(len(KILL_POINTS) + 2, CHUNKS):
            await send(chunk)
        assert len(message_ids) == MESSAGES

        for message_id in message_ids:
            message = await herald.wait_message(app, message_id, lambda m: all_final(m, RECIPIENTS), timeout=60)
            assert {d.state for d in message.deliveries} == {S.DELIVERY_STATE_SENT}
        await asyncio.sleep(2)  # room for any stray repeat to arrive

        requests = received()
        keys = Counter(r.headers["Idempotency-Key"] for r in requests)
        assert len(keys) == MESSAGES * RECIPIENTS, "every delivery reached its receiver"
        assert all(r.headers["Idempotency-Key"] == r.headers["Herald-Delivery-Id"] for r in requests)
        by_path = {r.path for r in requests}
        assert len(by_path) == len(keys), "one key per recipient: a repeat is always the same delivery"
        # Only calls in flight at a kill may be repeated: each repeat's first copy arrived before the last kill, and
        # a kill cuts off at most the jobs the adapters had in hand - a group or two (MAX_GROUP_RECORDS jobs each).
        first: dict[str, int] = {}
        for index, r in enumerate(requests):
            first.setdefault(r.headers["Idempotency-Key"], index)
        repeated = [key for key, n in keys.items() if n > 1]
        assert all(first[key] < killed_after for key in repeated), "a delivery repeated with no kill to cut it off"
        repeats = sum(keys.values()) - len(keys)
        assert repeats <= len(KILL_POINTS) * 2 * MAX_GROUP_RECORDS, f"{repeats} repeats after {len(KILL_POINTS)} kills"


async def test_a_call_cut_off_by_a_kill_is_not_repeated_to_a_provider_without_idempotency_keys(
    tmp_path: Path,
) -> None:
    twilio = FakeTwilio(account_sid="AC" + "3" * 32, auth_token=PROVIDER_ENV["HERALD_PROVIDER_TEST_SECRET"])
    await twilio.start()
    try:
        async with running_mesh(tmp_path, default_backend()) as (mesh, herald):
            await herald.providers.CreateProviderAccount(
                pb.CreateProviderAccountRequest(
                    account=pb.ProviderAccount(
                        name="twilio-main",
                        provider="twilio",
                        endpoint=twilio.url,
                        settings={"account_sid": twilio.account_sid, "from": "+15005550006"},
                        credentials={"auth_token": "HERALD_PROVIDER_TEST_SECRET"},
                        timeout_seconds=2,
                    )
                ),
                metadata=herald.admin,
            )
            _, app = await herald.create_app(("sms",))
            await herald.admin_stub.CreateTemplate(
                admin_service_pb2.CreateTemplateRequest(
                    template=admin_service_pb2.Template(
                        template_id="code",
                        category=S.CATEGORY_NOTIFICATION,
                        contents=[S.ChannelContent(channel="sms", body="Your parcel is here")],
                    )
                ),
                metadata=herald.admin,
            )
            twilio.delay = 60  # the provider has the request when the process dies
            request = msg.SendRequest(template_id="code", recipients=[msg.Recipient(addresses={"sms": "+15551230000"})])
            message_id = await herald.send(app, request)
            async with asyncio.timeout(30):
                while not twilio.received:
                    await asyncio.sleep(0.05)
            adapters = mesh.binaries["adapters"]
            await adapters.stop(signal.SIGKILL)
            twilio.delay = 0
            adapters.start()
            await adapters.wait_healthy()

            # JetStream redelivers the job once its ack wait (30 s) has passed.
            message = await herald.wait_message(app, message_id, all_final, timeout=90)
            [delivery] = message.deliveries
            assert delivery.state == S.DELIVERY_STATE_FAILED
            assert delivery.reason.startswith("outcome unknown: herald-adapters stopped while twilio-main")
            assert len(twilio.received) == 1, "the provider must not be called again"

            listed = await herald.dead_letters.ListDeadLetters(dlq.ListDeadLettersRequest(), metadata=herald.admin)
            [dead] = listed.dead_letters
            assert dead.delivery_id == delivery.delivery_id and dead.channel == "sms"
            # Resending is an operator's deliberate choice.
            replayed = await herald.dead_letters.ReplayDeadLetters(
                dlq.ReplayDeadLettersRequest(sequences=[dead.sequence]), metadata=herald.admin
            )
            assert replayed.replayed == 1
            message = await herald.wait_message(
                app, message_id, lambda m: m.deliveries[0].state == S.DELIVERY_STATE_SENT, timeout=30
            )
            assert len(twilio.received) == 2
            listed = await herald.dead_letters.ListDeadLetters(dlq.ListDeadLettersRequest(), metadata=herald.admin)
            assert not listed.dead_letters
    finally:
        await twilio.stop()
