"""The apns provider against a local HTTP/2 APNs: what Apple receives, and how each answer is classified."""

import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from herald.v1 import common_pb2

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels.apns import Apns
from herald.services.adapters.channels.base import Account, DeliveryError, Failure
from tests.adapters.channels.apns.conftest import BUNDLE_ID, KEY_ID, TEAM_ID, p8_key, pem
from tests.adapters.channels.apns.fake_apns import FakeApns

DEVICE = "a1" * 32
MakeProvider = Callable[..., Apns]


@pytest.fixture
async def make_provider(
    fake: FakeApns, signing_key: ec.EllipticCurvePrivateKey, session: aiohttp.ClientSession
) -> AsyncIterator[MakeProvider]:
    made: list[Apns] = []

    def make(*, key: str = "", timeout: float = 5.0, **settings: str) -> Apns:
        account = Account(
            name="apns-main",
            provider="apns",
            endpoint=settings.pop("endpoint", fake.url),
            settings={
                "team_id": TEAM_ID,
                "key_id": KEY_ID,
                "bundle_id": BUNDLE_ID,
                "tls_ca_file": fake.ca_file,
                **settings,
            },
            secrets={"auth_key": key or pem(signing_key)},
            timeout=timeout,
        )
        made.append(Apns(account, session))
        return made[-1]

    yield make
    for provider in made:
        await provider.close()


def job(
    category: common_pb2.Category.ValueType = common_pb2.CATEGORY_CRITICAL, address: str = DEVICE, **changes: str
) -> work_pb2.DeliveryJob:
    delivery = work_pb2.DeliveryJob(
        delivery_id="msg_01JD3ABCDEFGHJKMNPQRSTVWXY.0",
        message_id="msg_01JD3ABCDEFGHJKMNPQRSTVWXY",
        category=category,
        channel="apns",
        address=address,
        subject="Your order shipped",
        body="It arrives on Tuesday.",
        data={"order": "A-1042"},
    )
    for key, value in changes.items():
        setattr(delivery, key, value)
    return delivery


async def refused(provider: Apns, delivery: work_pb2.DeliveryJob) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await provider.send(delivery)
    return caught.value


async def test_sends_over_http2_with_a_verified_provider_token(fake: FakeApns, make_provider: MakeProvider) -> None:
    expire_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    delivery = job()
    delivery.expire_at.FromDatetime(expire_at)

    sent = await make_provider().send(delivery)

    [got] = fake.received
    assert got.http_version == "2"
    assert got.device_token == DEVICE
    assert got.jwt_header["kid"] == KEY_ID and got.claims["iss"] == TEAM_ID
    assert abs(time.time() - int(str(got.claims["iat"]))) < 60
    assert got.headers["apns-topic"] == BUNDLE_ID
    assert got.headers["apns-push-type"] == "alert"
    assert got.headers["apns-priority"] == "10"
    assert got.headers["apns-expiration"] == str(int(expire_at.timestamp()))
    assert got.headers["apns-collapse-id"] == delivery.delivery_id
    assert got.payload == {
        "aps": {"alert": {"title": "Your order shipped", "body": "It arrives on Tuesday."}},
        "order": "A-1042",
    }
    assert sent.provider_message_id == got.headers["apns-id"]


async def test_a_repeat_carries_the_same_apns_id(fake: FakeApns, make_provider: MakeProvider) -> None:
    provider = make_provider()
    first = await provider.send(job())
    second = await provider.send(job())
    other = await provider.send(job(delivery_id="msg_01JD3ABCDEFGHJKMNPQRSTVWXY.1"))
    assert first.provider_message_id == second.provider_message_id != other.provider_message_id
    assert [r.headers["apns-collapse-id"] for r in fake.received] == [
        "msg_01JD3ABCDEFGHJKMNPQRSTVWXY.0",
        "msg_01JD3ABCDEFGHJKMNPQRSTVWXY.0",
        "msg_01JD3ABCDEFGHJKMNPQRSTVWXY.1",
    ]


async def test_marketing_goes_at_low_priority_and_without_expiry(fake: FakeApns, make_provider: MakeProvider) -> None:
    await make_provider().send(job(common_pb2.CATEGORY_MARKETING))
    [got] = fake.received
    assert got.headers["apns-priority"] == "5"
    assert "apns-expiration" not in got.headers, "0 would tell APNs not to keep it for a device that is offline"


async def test_the_provider_token_is_reused_then_renewed_after_50_minutes(
    fake: FakeApns, make_provider: MakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = make_provider()
    real_time = time.time
    # The first sends happen 51 minutes ago (PyJWT refuses an iat in the future, so the clock goes back).
    monkeypatch.setattr(time, "time", lambda: real_time() - 51 * 60)
    await provider.send(job())
    await provider.send(job())
    assert len(fake.tokens) == 1, "the second send must reuse the provider token"

    monkeypatch.undo()
    await provider.send(job())
    assert len(fake.tokens) == 2
    assert len(fake.received) == 3


async def test_an_expired_provider_token_is_retryable_and_replaced(fake: FakeApns, make_provider: MakeProvider) -> None:
    provider = make_provider()
    fake.clock_offset = 61 * 60
    error = await refused(provider, job())
    assert error.failure is Failure.RETRYABLE
    assert "ExpiredProviderToken" in error.reason and "clock" in error.reason

    fake.clock_offset = 0
    await provider.send(job())
    assert len(fake.tokens) == 1 and len(fake.received) == 1


async def test_outage_is_retryable(fake: FakeApns, make_provider: MakeProvider) -> None:
    fake.outage = 503
    error = await refused(make_provider(), job())
    assert error.failure is Failure.RETRYABLE
    assert error.reason == "apns-main: APNs answered HTTP 503 ServiceUnavailable"


async def test_slowness_is_retryable_and_the_connection_survives(fake: FakeApns, make_provider: MakeProvider) -> None:
    provider = make_provider(timeout=0.3)
    fake.delay = 1.0
    error = await refused(provider, job())
    assert error.failure is Failure.RETRYABLE
    assert error.reason == "apns-main timed out after 0.3s"

    fake.delay = 0
    await provider.send(job())


async def test_rate_limiting(fake: FakeApns, make_provider: MakeProvider) -> None:
    fake.rate_limited = True
    error = await refused(make_provider(), job())
    assert error.failure is Failure.RATE_LIMITED
    assert "TooManyRequests" in error.reason and "too many notifications to this device" in error.reason


async def test_a_key_apple_does_not_know_is_bad_credentials(fake: FakeApns, make_provider: MakeProvider) -> None:
    error = await refused(make_provider(key=pem(p8_key())), job())
    assert error.failure is Failure.BAD_CREDENTIALS
    assert "InvalidProviderToken" in error.reason and "key_id" in error.reason
    assert fake.received == []


async def test_a_key_id_apple_does_not_know_is_bad_credentials(make_provider: MakeProvider) -> None:
    error = await refused(make_provider(key_id="OTHERKEY00"), job())
    assert error.failure is Failure.BAD_CREDENTIALS and "InvalidProviderToken" in error.reason


async def test_an_auth_key_that_is_not_a_p8_key_is_bad_credentials(make_provider: MakeProvider) -> None:
    error = await refused(make_provider(key="-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"), job())
    assert error.failure is Failure.BAD_CREDENTIALS
    assert "'auth_key' is not an APNs .p8 signing key" in error.reason


async def test_an_unregistered_device_is_a_dead_address(fake: FakeApns, make_provider: MakeProvider) -> None:
    fake.unregistered.add(DEVICE)
    error = await refused(make_provider(), job())
    assert error.failure is Failure.DEAD_ADDRESS
    assert "HTTP 410 Unregistered" in error.reason


async def test_a_bad_device_token_is_refused_but_not_called_dead(make_provider: MakeProvider) -> None:
    # APNs says BadDeviceToken for a sandbox token sent to production too: the account may be wrong, not the token.
    error = await refused(make_provider(), job(address="not-a-device-token"))
    assert error.failure is Failure.PERMANENT
    assert "HTTP 400 BadDeviceToken" in error.reason


async def test_a_payload_over_4kb_is_permanent(make_provider: MakeProvider) -> None:
    error = await refused(make_provider(), job(body="x" * 5000))
    assert error.failure is Failure.PERMANENT
    assert "HTTP 413 PayloadTooLarge" in error.reason and "4 KB" in error.reason


async def test_a_token_for_another_app_is_permanent(make_provider: MakeProvider) -> None:
    error = await refused(make_provider(bundle_id="com.example.other"), job())
    assert error.failure is Failure.PERMANENT
    assert "DeviceTokenNotForTopic" in error.reason


async def test_the_system_ca_store_does_not_trust_the_fake(make_provider: MakeProvider) -> None:
    error = await refused(make_provider(tls_ca_file=""), job())
    assert error.failure is Failure.RETRYABLE
    assert error.reason.startswith("apns-main unreachable") and "CERTIFICATE_VERIFY_FAILED" in error.reason


async def test_an_unreachable_endpoint_is_retryable(make_provider: MakeProvider) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    error = await refused(make_provider(endpoint=f"https://127.0.0.1:{port}"), job())
    assert error.failure is Failure.RETRYABLE
    assert error.reason.startswith("apns-main unreachable")
