"""The fcm provider against a local Google token endpoint and FCM: what they receive, and how answers are
classified."""

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from herald.v1 import common_pb2

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels.base import Account, DeliveryError, Failure
from herald.services.adapters.channels.fcm import Fcm
from tests.adapters.channels.fcm.conftest import CLIENT_EMAIL, PROJECT_ID, rsa_key, service_account_json
from tests.adapters.channels.fcm.fake_fcm import SCOPE, FakeFcm

DEVICE = "dev1:APA91b" + "x" * 140
MakeProvider = Callable[..., Fcm]


@pytest.fixture
def make_provider(fake: FakeFcm, service_key: rsa.RSAPrivateKey, session: aiohttp.ClientSession) -> MakeProvider:
    def make(*, key_file: str = "", timeout: float = 5.0) -> Fcm:
        account = Account(
            name="fcm-main",
            provider="fcm",
            endpoint=fake.url,
            secrets={"service_account_json": key_file or service_account_json(service_key, fake.token_uri)},
            timeout=timeout,
        )
        return Fcm(account, session)

    return make


def job(
    category: common_pb2.Category.ValueType = common_pb2.CATEGORY_CRITICAL, address: str = DEVICE
) -> work_pb2.DeliveryJob:
    return work_pb2.DeliveryJob(
        delivery_id="msg_01JD3ABCDEFGHJKMNPQRSTVWXY.0",
        message_id="msg_01JD3ABCDEFGHJKMNPQRSTVWXY",
        category=category,
        channel="fcm",
        address=address,
        subject="Your order shipped",
        body="It arrives on Tuesday.",
        data={"order": "A-1042"},
    )


async def refused(provider: Fcm, delivery: work_pb2.DeliveryJob) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await provider.send(delivery)
    return caught.value


async def test_trades_a_signed_assertion_for_a_token_and_sends(fake: FakeFcm, make_provider: MakeProvider) -> None:
    expire_at = datetime.now(UTC) + timedelta(hours=1)
    delivery = job()
    delivery.expire_at.FromDatetime(expire_at)

    sent = await make_provider().send(delivery)

    [assertion] = fake.assertions
    assert assertion["iss"] == CLIENT_EMAIL and assertion["scope"] == SCOPE and assertion["aud"] == fake.token_uri
    assert assertion["exp"] - assertion["iat"] == 3600 and abs(time.time() - assertion["iat"]) < 60
    [got] = fake.received
    assert got.authorization.removeprefix("Bearer ") in fake.issued
    assert got.message["token"] == DEVICE
    assert got.message["notification"] == {"title": "Your order shipped", "body": "It arrives on Tuesday."}
    assert got.message["data"] == {"order": "A-1042"}
    assert got.message["android"]["priority"] == "high"
    ttl = int(got.message["android"]["ttl"].removesuffix("s"))
    assert 3590 <= ttl <= 3600
    assert sent.provider_message_id.startswith(f"projects/{PROJECT_ID}/messages/")


async def test_non_critical_goes_at_normal_priority_without_ttl(fake: FakeFcm, make_provider: MakeProvider) -> None:
    await make_provider().send(job(common_pb2.CATEGORY_MARKETING))
    [got] = fake.received
    assert got.message["android"] == {"priority": "normal"}


async def test_the_access_token_is_reused(fake: FakeFcm, make_provider: MakeProvider) -> None:
    provider = make_provider()
    first = await provider.send(job())
    second = await provider.send(job())
    assert len(fake.assertions) == 1, "the second send must reuse the access token"
    assert first.provider_message_id != second.provider_message_id
    assert fake.received[0].authorization == fake.received[1].authorization


async def test_concurrent_sends_share_one_token_fetch(fake: FakeFcm, make_provider: MakeProvider) -> None:
    provider = make_provider()
    await asyncio.gather(*(provider.send(job()) for _ in range(5)))
    assert len(fake.assertions) == 1
    assert len(fake.received) == 5


async def test_a_revoked_access_token_is_retryable_then_replaced(fake: FakeFcm, make_provider: MakeProvider) -> None:
    provider = make_provider()
    await provider.send(job())
    fake.revoke_tokens()
    error = await refused(provider, job())
    assert error.failure is Failure.RETRYABLE
    assert "HTTP 401 UNAUTHENTICATED" in error.reason and "new access token" in error.reason

    await provider.send(job())
    assert len(fake.assertions) == 2


async def test_outage_is_retryable(fake: FakeFcm, make_provider: MakeProvider) -> None:
    fake.outage = True
    error = await refused(make_provider(), job())
    assert error.failure is Failure.RETRYABLE
    assert error.reason == "fcm-main: FCM answered HTTP 503 UNAVAILABLE (The service is currently unavailable.)"


async def test_token_endpoint_outage_is_retryable(fake: FakeFcm, make_provider: MakeProvider) -> None:
    fake.token_outage = True
    error = await refused(make_provider(), job())
    assert error.failure is Failure.RETRYABLE
    assert error.reason == "fcm-main token endpoint answered HTTP 503: internal_failure"
    assert fake.received == []


async def test_slowness_is_retryable(fake: FakeFcm, make_provider: MakeProvider) -> None:
    fake.delay = 1.0
    error = await refused(make_provider(timeout=0.3), job())
    assert error.failure is Failure.RETRYABLE
    assert error.reason == "fcm-main timed out after 0.3s"


async def test_quota_exceeded_is_rate_limited(fake: FakeFcm, make_provider: MakeProvider) -> None:
    fake.quota_exceeded = True
    error = await refused(make_provider(), job())
    assert error.failure is Failure.RATE_LIMITED
    assert error.retry_after == 60
    assert "HTTP 429 QUOTA_EXCEEDED" in error.reason


async def test_a_key_google_does_not_know_is_bad_credentials(fake: FakeFcm, make_provider: MakeProvider) -> None:
    error = await refused(make_provider(key_file=service_account_json(rsa_key(), fake.token_uri)), job())
    assert error.failure is Failure.BAD_CREDENTIALS
    assert "invalid_grant: Invalid JWT Signature." in error.reason
    assert fake.received == []


async def test_a_key_file_that_is_not_json_is_bad_credentials(make_provider: MakeProvider) -> None:
    error = await refused(make_provider(key_file="not json"), job())
    assert error.failure is Failure.BAD_CREDENTIALS
    assert "'service_account_json' is not JSON" in error.reason


async def test_a_key_file_without_a_private_key_is_bad_credentials(make_provider: MakeProvider) -> None:
    error = await refused(make_provider(key_file='{"client_email": "a@b", "token_uri": "x", "project_id": "p"}'), job())
    assert error.failure is Failure.BAD_CREDENTIALS
    assert "is not a Google service-account key file (no private_key)" in error.reason


async def test_a_token_of_another_project_is_bad_credentials(fake: FakeFcm, make_provider: MakeProvider) -> None:
    fake.other_sender.add(DEVICE)
    error = await refused(make_provider(), job())
    assert error.failure is Failure.BAD_CREDENTIALS
    assert "SENDER_ID_MISMATCH" in error.reason and PROJECT_ID in error.reason


async def test_refused_apns_credentials_in_firebase_are_bad_credentials(
    fake: FakeFcm, make_provider: MakeProvider
) -> None:
    fake.third_party_auth_error = True
    error = await refused(make_provider(), job())
    assert error.failure is Failure.BAD_CREDENTIALS
    assert "THIRD_PARTY_AUTH_ERROR" in error.reason


async def test_an_unregistered_token_is_a_dead_address(fake: FakeFcm, make_provider: MakeProvider) -> None:
    fake.unregistered.add(DEVICE)
    error = await refused(make_provider(), job())
    assert error.failure is Failure.DEAD_ADDRESS
    assert "HTTP 404 UNREGISTERED (Requested entity was not found.)" in error.reason


async def test_an_invalid_token_is_a_dead_address(make_provider: MakeProvider) -> None:
    error = await refused(make_provider(), job(address="garbage"))
    assert error.failure is Failure.DEAD_ADDRESS
    assert "not a valid FCM registration token" in error.reason


async def test_a_reserved_data_key_is_permanent(make_provider: MakeProvider) -> None:
    delivery = job()
    delivery.data["google.campaign"] = "spring"
    error = await refused(make_provider(), delivery)
    assert error.failure is Failure.PERMANENT
    assert (
        "INVALID_ARGUMENT" in error.reason and "message.data: Invalid data payload key: google.campaign" in error.reason
    )
