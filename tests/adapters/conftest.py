"""Fake SMS providers that accept the credentials the test mesh's provider accounts name (PROVIDER_ENV)."""

from collections.abc import AsyncIterator

import pytest

from tests.adapters.channels.sms.fake_alibaba import FakeAlibaba
from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.conftest import PROVIDER_ENV


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio(account_sid="AC" + "2" * 32, auth_token=PROVIDER_ENV["HERALD_PROVIDER_TEST_SECRET"])
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def alibaba() -> AsyncIterator[FakeAlibaba]:
    fake = FakeAlibaba(
        access_key_id=PROVIDER_ENV["HERALD_PROVIDER_TEST_KEY_ID"],
        access_key_secret=PROVIDER_ENV["HERALD_PROVIDER_TEST_SECRET"],
        sign_names={"herald"},
        templates={"SMS_CODE": {"code"}},
    )
    await fake.start()
    yield fake
    await fake.stop()
