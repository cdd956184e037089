"""A fake APNs per test, and the team's .p8 signing key it trusts."""

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.adapters.channels.apns.fake_apns import FakeApns

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
BUNDLE_ID = "com.example.herald"


def p8_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key, as Apple issues in a .p8 file."""
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def signing_key() -> ec.EllipticCurvePrivateKey:
    return p8_key()


@pytest.fixture
async def fake(signing_key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> AsyncIterator[FakeApns]:
    public = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    server = FakeApns(TEAM_ID, KEY_ID, BUNDLE_ID, public.decode(), tmp_path)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http
