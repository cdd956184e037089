"""A fresh fake provider per test, so what one test tells a fake to do never leaks into the next."""

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.adapters.channels.sms.fake_alibaba import FakeAlibaba
from tests.adapters.channels.sms.fake_twilio import FakeTwilio


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio(account_sid="AC" + "1" * 32, auth_token="twilio-token-for-tests")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def alibaba() -> AsyncIterator[FakeAlibaba]:
    fake = FakeAlibaba(
        access_key_id="LTAI-test-key",
        access_key_secret="alibaba-secret-for-tests",
        sign_names={"阿里云短信测试"},
        templates={"SMS_154950909": {"code"}, "SMS_NOTICE": set()},
    )
    await fake.start()
    yield fake
    await fake.stop()
