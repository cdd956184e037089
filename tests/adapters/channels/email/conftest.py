from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme

from tests.adapters.channels.email.fake_sendgrid import FakeSendGrid
from tests.adapters.channels.email.fake_ses import FakeSes
from tests.adapters.channels.email.fake_smtp import PASSWORD, USERNAME, FakeSmtp, write_ca


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    return write_ca(ca, tmp_path)


@pytest.fixture
async def relay(ca: trustme.CA) -> AsyncIterator[FakeSmtp]:
    fake = FakeSmtp(ca, USERNAME, PASSWORD)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sendgrid() -> AsyncIterator[FakeSendGrid]:
    fake = FakeSendGrid(api_key="SG.sendgrid-key-for-tests")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def ses() -> AsyncIterator[FakeSes]:
    fake = FakeSes(access_key_id="AKIDEXAMPLE", secret_access_key="ses-secret-for-tests")
    await fake.start()
    yield fake
    await fake.stop()
