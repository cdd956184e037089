"""What an audit record keeps of a request: secrets redacted wherever they appear, addresses masked, and a record
even of a request JSON cannot represent (which the call refused); and of a SendBatch, the messages it made."""

import asyncio
from typing import Any

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import directory_service_pb2 as directory
from herald.v1 import events_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as providers

from herald.libs import subjects
from herald.libs.audit import REDACTED, AuditTrail, begin, redacted
from herald.libs.auth import CALLING_APP
from herald.libs.bus import ACK, Incoming, Outcome
from herald.libs.roles import RULES
from tests.helpers.memory_bus import MemoryBus


def _recorded(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(redacted(message))


def test_secrets_are_redacted_and_addresses_masked() -> None:
    key = admin.CreateAppResponse(app=admin.App(app_id="app_1", name="shop"), api_key="hk_secret")
    assert _recorded(key)["api_key"] == REDACTED and _recorded(key)["app"]["name"] == "shop"
    account = providers.ProviderAccount(name="twilio-main", credentials={"auth_token": "HERALD_PROVIDER_TOKEN"})
    assert _recorded(account)["credentials"] == {"auth_token": REDACTED}
    user = directory.User(
        user_id="u1", addresses={"email": "alice@example.com", "sms": "+8613800001234", "apns": "a1b2c3d4e5f6"}
    )
    addresses = _recorded(user)["addresses"]
    assert addresses["email"] == "a***@example.com" and addresses["apns"] == REDACTED
    assert addresses["sms"].endswith("******1234") and "13800001234" not in addresses["sms"]


def test_a_flat_answer_is_recorded_as_its_json_with_secrets_redacted() -> None:
    """A message of single strings and bools (a Send's answer) is read without JSON's reflection, to the same
    record."""
    answer = msg.SendResponse(message_id="msg_1", duplicate=True)
    assert _recorded(answer) == json_format.MessageToDict(answer, preserving_proto_field_name=True)
    assert _recorded(admin.CreateAppResponse(api_key="hk_secret")) == {"api_key": REDACTED}


def test_a_request_json_cannot_hold_is_recorded_as_such() -> None:
    malformed = admin.RotateAppKeyRequest(app_id="app_1", grace_period=Duration(seconds=5, nanos=-1))
    assert "unrepresentable" in _recorded(malformed)


async def test_a_send_batchs_record_names_the_messages_it_made_and_counts_the_refused() -> None:
    """A SendBatch's record keeps the ids of its messages, in order, not its whole answer (whose JSON cost intake a
    tenth of its CPU per message)."""
    answer = msg.SendBatchResponse()
    answer.results.add().response.message_id = "msg_1"
    answer.results.add().error.message = "template 't' needs 'code'"
    answer.results.add().response.message_id = "msg_2"
    async with MemoryBus() as bus:
        arrived: list[events_pb2.AuditEvent] = []

        async def handler(batch: list[Incoming]) -> list[Outcome]:
            arrived.extend(e for i in batch for e in events_pb2.AuditEvents.FromString(i.data).events)
            return [ACK] * len(batch)

        await bus.consume(subjects.EVENTS_STREAM, "audit-test", subjects.AUDIT, handler)
        trail = AuditTrail(bus, "intake")
        method = "herald.v1.MessageService/SendBatch"
        change = begin(RULES[method])
        CALLING_APP.set("app_1")  # as the key's check does
        await trail.record(method, change, msg.SendBatchRequest(), answer, None, None)
        for _ in range(200):
            if arrived:
                break
            await asyncio.sleep(0.05)
    [record] = arrived
    assert record.actor == "app:app_1" and record.target == "apps/app_1/messages"
    assert json_format.MessageToDict(record.after) == {"message_ids": ["msg_1", "msg_2"], "refused_entries": 1}
    assert not record.HasField("request"), "a message's content is its own"
