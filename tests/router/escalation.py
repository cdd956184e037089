"""What the escalation tests share: an inbox-first template that escalates to sms, a user with a phone in the
directory, the inbox read the way a device reads it, and watching the fake Twilio for a number."""

import asyncio
import time
import uuid

from google.protobuf import duration_pb2
from herald.v1 import admin_service_pb2, common_pb2, directory_service_pb2, inbox_service_pb2
from herald.v1 import provider_service_pb2 as pb

from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.adapters.sms import twilio_account
from tests.helpers.client import Herald, Metadata

S = common_pb2


async def escalating_template(herald: Herald, seconds: int) -> str:
    """Inbox at once; sms `seconds` later unless the item was read."""
    template_id = f"t-{uuid.uuid4().hex[:10]}"
    template = admin_service_pb2.Template(
        template_id=template_id,
        category=S.CATEGORY_NOTIFICATION,
        contents=[
            S.ChannelContent(channel="inbox", subject="Approve", body="Request {{ n }} waits for you"),
            S.ChannelContent(channel="sms", body="Request {{ n }} waits for your approval"),
        ],
        offline_push=admin_service_pb2.OFFLINE_PUSH_DISABLED,
        escalation=[admin_service_pb2.EscalationStep(channel="sms", delay=duration_pb2.Duration(seconds=seconds))],
    )
    await herald.admin_stub.CreateTemplate(
        admin_service_pb2.CreateTemplateRequest(template=template), metadata=herald.admin
    )
    return template_id


async def sms_account(herald: Herald, fake: FakeTwilio) -> str:
    name = f"twilio-{uuid.uuid4().hex[:6]}"
    await herald.providers.CreateProviderAccount(
        pb.CreateProviderAccountRequest(account=twilio_account(name, fake)), metadata=herald.admin
    )
    return name


async def user_with_phone(herald: Herald, phone: str) -> str:
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    user = directory_service_pb2.User(user_id=user_id, addresses={"sms": phone})
    await herald.directory.UpsertUser(directory_service_pb2.UpsertUserRequest(user=user), metadata=herald.admin)
    return user_id


async def read_inbox(herald: Herald, app: Metadata, user_id: str) -> None:
    """Once the item is there, read it as a device would."""
    async with asyncio.timeout(30):
        while not (await herald.inbox.Sync(inbox_service_pb2.SyncRequest(user_id=user_id), metadata=app)).items:
            await asyncio.sleep(0.1)
    await herald.inbox.MarkRead(inbox_service_pb2.MarkReadRequest(user_id=user_id, up_to_seq=1), metadata=app)


async def sms_arrival(fake: FakeTwilio, phone: str, timeout: float) -> float:
    """The time.time() at which Twilio first took an sms to `phone` (polled every 0.1 s)."""
    async with asyncio.timeout(timeout):
        while not [r for r in fake.received if r.form.get("To") == phone]:
            await asyncio.sleep(0.1)
    return time.time()
