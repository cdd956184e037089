"""App push over a test mesh: an APNs account on the fake, signing with the key the mesh holds (PROVIDER_ENV)."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from herald.v1 import provider_service_pb2 as pb

from tests.adapters.channels.apns.conftest import BUNDLE_ID, KEY_ID, TEAM_ID
from tests.adapters.channels.apns.fake_apns import FakeApns
from tests.helpers.client import Herald


@asynccontextmanager
async def apns_account(herald: Herald, fake: FakeApns) -> AsyncIterator[str]:
    """The only APNs account while the block runs."""
    name = f"apns-{uuid.uuid4().hex[:6]}"
    account = pb.ProviderAccount(
        name=name,
        provider="apns",
        endpoint=fake.url,
        settings={"team_id": TEAM_ID, "key_id": KEY_ID, "bundle_id": BUNDLE_ID, "tls_ca_file": fake.ca_file},
        credentials={"auth_key": "HERALD_PROVIDER_TEST_APNS_KEY"},
    )
    await herald.providers.CreateProviderAccount(
        pb.CreateProviderAccountRequest(account=account), metadata=herald.admin
    )
    try:
        yield name
    finally:
        await herald.providers.DeleteProviderAccount(pb.DeleteProviderAccountRequest(name=name), metadata=herald.admin)


def pushes_to(fake: FakeApns, device: str) -> list[dict[str, object]]:
    """The payloads APNs took for `device`."""
    return [r.payload for r in fake.received if r.device_token == device]
