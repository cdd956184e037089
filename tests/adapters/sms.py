"""SMS over the test mesh: accounts on the fake providers, and a template both can send (Alibaba sends only
approved templates, named in data["template_code"], with the variables it fills)."""

import uuid

from herald.v1 import admin_service_pb2, common_pb2
from herald.v1 import provider_service_pb2 as pb

from tests.adapters.channels.sms.fake_alibaba import FakeAlibaba
from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.helpers.client import Herald

S = common_pb2
PHONE = "+8613800138000"


async def sms_template(herald: Herald, category: common_pb2.Category.ValueType = S.CATEGORY_CRITICAL) -> str:
    template_id = f"t-{uuid.uuid4().hex[:10]}"
    content = S.ChannelContent(channel="sms", body="Your code is {{ code }}", data={"template_code": "SMS_CODE"})
    content.data["code"] = "{{ code }}"
    await herald.admin_stub.CreateTemplate(
        admin_service_pb2.CreateTemplateRequest(
            template=admin_service_pb2.Template(template_id=template_id, category=category, contents=[content])
        ),
        metadata=herald.admin,
    )
    return template_id


def twilio_account(name: str, fake: FakeTwilio, **settings: str) -> pb.ProviderAccount:
    """A Twilio account on the fake, with the credential the test mesh holds (PROVIDER_ENV)."""
    return pb.ProviderAccount(
        name=name,
        provider="twilio",
        endpoint=fake.url,
        settings={"account_sid": fake.account_sid, "from": "+15005550006", **settings},
        credentials={"auth_token": "HERALD_PROVIDER_TEST_SECRET"},
    )


def alibaba_account(name: str, fake: FakeAlibaba, **credentials: str) -> pb.ProviderAccount:
    return pb.ProviderAccount(
        name=name,
        provider="alibaba_sms",
        endpoint=fake.url,
        settings={"sign_name": "herald"},
        credentials={
            "access_key_id": "HERALD_PROVIDER_TEST_KEY_ID",
            "access_key_secret": "HERALD_PROVIDER_TEST_SECRET",
            **credentials,
        },
    )
