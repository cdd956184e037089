"""Provider accounts reserved for categories: a critical SMS goes only through the accounts reserved for critical,
marketing never does, so a campaign never shares an account or its rate limit with one-time codes; and when the
reserved account is failing, critical does not spill over to the marketing account."""

import uuid
from collections import Counter

import grpc
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as pb

from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.adapters.sms import PHONE, sms_template, twilio_account
from tests.helpers.client import Herald, Metadata, all_final, bad_fields, rpc_error

S = common_pb2
EACH = 30


async def _through(herald: Herald, app: Metadata, template: str) -> Counter[str]:
    sends = [
        msg.SendRequest(
            template_id=template, recipients=[msg.Recipient(addresses={"sms": PHONE})], variables={"code": str(n)}
        )
        for n in range(EACH)
    ]
    reply = await herald.messages.SendBatch(msg.SendBatchRequest(requests=sends), metadata=app)
    through: Counter[str] = Counter()
    for result in reply.results:
        [delivery] = (await herald.wait_message(app, result.response.message_id, all_final, timeout=60)).deliveries
        assert delivery.state == S.DELIVERY_STATE_SENT, delivery.reason
        through[delivery.provider] += 1
    return through


async def test_critical_sms_uses_only_its_reserved_account_and_marketing_never_does(
    herald: Herald, twilio: FakeTwilio
) -> None:
    suffix = uuid.uuid4().hex[:6]
    reserved, bulk = twilio_account(f"twilio-otp-{suffix}", twilio), twilio_account(f"twilio-bulk-{suffix}", twilio)
    reserved.categories[:] = [S.CATEGORY_CRITICAL]
    bulk.categories[:] = [S.CATEGORY_NOTIFICATION, S.CATEGORY_MARKETING]
    reserved.priority, bulk.priority = 1, 0  # the bulk account is preferred wherever it is allowed
    async with herald.provider_accounts(reserved, bulk):
        got = await herald.providers.GetProviderAccount(
            pb.GetProviderAccountRequest(name=reserved.name), metadata=herald.admin
        )
        assert list(got.categories) == [S.CATEGORY_CRITICAL]
        _, app = await herald.create_app(("sms",))
        critical = await _through(herald, app, await sms_template(herald, S.CATEGORY_CRITICAL))
        marketing = await _through(herald, app, await sms_template(herald, S.CATEGORY_MARKETING))
    assert critical == {reserved.name: EACH}, critical
    assert marketing == {bulk.name: EACH}, marketing


async def test_an_unknown_category_is_refused_with_the_field(herald: Herald, twilio: FakeTwilio) -> None:
    account = twilio_account(f"twilio-bad-{uuid.uuid4().hex[:6]}", twilio)
    account.categories.append(common_pb2.Category.ValueType(42))
    request = pb.CreateProviderAccountRequest(account=account)
    error = await rpc_error(herald.providers.CreateProviderAccount(request, metadata=herald.admin))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_fields(error)) == {"account.categories"}
