"""Malformed and hostile Sends, in one process: whatever a request holds, intake's checks answer with a refusal that
has a status (a HeraldError) or accept it - never another exception, which a caller would see as UNKNOWN or
INTERNAL. Bytes that do not parse, tokens, and the process staying up are the mesh's (test_hostile_requests.py)."""

import asyncio
import contextlib

from google.protobuf import timestamp_pb2
from herald.v1 import admin_service_pb2, common_pb2
from herald.v1 import message_service_pb2 as msg
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.libs.auth import AppIdentity
from herald.libs.errors import HeraldError
from herald.services.intake.acceptance import Acceptance
from herald.services.intake.common_part import CommonPart
from tests.intake.stand_ins import Ids, Limiter, Shedder, Templates, Topics

SETTINGS = settings(max_examples=300, deadline=None)
APP = AppIdentity(app_id="fuzz", name="fuzz")
TARGET = admin_service_pb2.Template(
    template_id="fuzz-target",
    version=1,
    category=common_pb2.CATEGORY_NOTIFICATION,
    contents=[common_pb2.ChannelContent(channel="webhook", body="{{ code }}")],
)

text = st.one_of(
    st.text(max_size=40),
    # Long values cost the generator nothing: the size is what is being tested, not the characters.
    st.integers(min_value=201, max_value=6000).map(lambda n: "é" * n),
    st.sampled_from(["", "webhook", "sms", "../../etc", "\x00", "a" * 300]),
)
channels = st.one_of(st.sampled_from(["webhook", "email", "sms", "inbox", "WEBHOOK", "pigeon", ""]), text)
timestamps = st.builds(
    timestamp_pb2.Timestamp,
    seconds=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    nanos=st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
recipients = st.builds(
    msg.Recipient,
    user_id=text,
    addresses=st.dictionaries(channels, text, max_size=4),
    variables=st.dictionaries(text, text, max_size=4),
    locale=text,
)


async def _answer(request: msg.SendRequest) -> None:
    acceptance = Acceptance(Templates(TARGET), Topics(), Shedder(), Ids(), Limiter())
    with contextlib.suppress(HeraldError):
        await acceptance.prepare(APP, request, CommonPart(APP))


@SETTINGS
@given(
    template_id=st.one_of(st.just("fuzz-target"), text),
    recipients=st.lists(recipients, max_size=5),
    variables=st.dictionaries(text, text, max_size=5),
    channel_list=st.lists(channels, max_size=4),
    send_at=st.one_of(st.none(), timestamps),
    expire_at=st.one_of(st.none(), timestamps),
    idempotency_key=text,
    topic=st.one_of(st.just(""), text),
)
def test_malformed_sends_are_refused_with_a_status_or_accepted(
    template_id: str,
    recipients: list[msg.Recipient],
    variables: dict[str, str],
    channel_list: list[str],
    send_at: timestamp_pb2.Timestamp | None,
    expire_at: timestamp_pb2.Timestamp | None,
    idempotency_key: str,
    topic: str,
) -> None:
    """Was test_hostile_requests.py's test_malformed_sends_get_precise_statuses (Send and SendBatch entries both go
    through Acceptance.prepare; anything else it raised would be INTERNAL)."""
    request = msg.SendRequest(
        template_id=template_id,
        recipients=recipients,
        variables=variables,
        channels=channel_list,
        idempotency_key=idempotency_key,
        topic=topic,
        dry_run=True,
    )
    if send_at is not None:
        request.send_at.CopyFrom(send_at)
    if expire_at is not None:
        request.expire_at.CopyFrom(expire_at)
    asyncio.run(_answer(request))
