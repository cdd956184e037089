"""A fake FCM per test, and a service-account key file whose key pair it trusts."""

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.adapters.channels.fcm.fake_fcm import FakeFcm

PROJECT_ID = "herald-test"
CLIENT_EMAIL = "herald-sender@herald-test.iam.gserviceaccount.com"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_json(key: rsa.RSAPrivateKey, token_uri: str) -> str:
    """A key file shaped like the one the Google Cloud console downloads."""
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": PROJECT_ID,
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": private,
            "client_email": CLIENT_EMAIL,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        }
    )


@pytest.fixture(scope="session")
def service_key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture
async def fake(service_key: rsa.RSAPrivateKey) -> AsyncIterator[FakeFcm]:
    public = service_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    server = FakeFcm(PROJECT_ID, CLIENT_EMAIL, public.decode())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http
