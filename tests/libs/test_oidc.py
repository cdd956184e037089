"""The JWT verifier on its own: settings refused before anything connects, the roles claim in either form a
provider writes it, and tokens a forger could make without the provider's key refused."""

import asyncio
import time
from collections.abc import AsyncIterator

import jwt
import pytest

from herald.libs.config import OidcSettings
from herald.libs.errors import Unauthenticated
from herald.libs.oidc import LEEWAY_SECONDS, OidcVerifier
from herald.libs.roles import ANALYST, SUPPORT
from tests.helpers.oidc_provider import AUDIENCE, OidcProvider


@pytest.fixture
async def provider() -> AsyncIterator[OidcProvider]:
    running = OidcProvider()
    await running.start()
    yield running
    await running.stop()


def test_an_issuer_without_an_audience_is_a_bad_setting_named() -> None:
    assert OidcSettings.from_env({}) is None
    with pytest.raises(ValueError, match="HERALD_OIDC_AUDIENCE"):
        OidcSettings.from_env({"HERALD_OIDC_ISSUER": "https://login.example.com"})


async def test_roles_come_as_a_list_or_a_string_and_unknown_ones_are_dropped(provider: OidcProvider) -> None:
    verifier = OidcVerifier(OidcSettings(provider.issuer, AUDIENCE, "", "groups"))
    listed = await verifier.verify(provider.token([], groups=[SUPPORT, "finance"]))
    spaced = await verifier.verify(provider.token([], subject="bo", groups=f"{ANALYST} {SUPPORT}"))
    assert (listed.actor, listed.roles) == ("ann@example.com", frozenset({SUPPORT}))
    assert (spaced.actor, spaced.roles) == ("bo", frozenset({ANALYST, SUPPORT}))
    assert provider.jwks_fetches == 1, "the keys are fetched once, from the discovery document's jwks_uri"


async def test_unsigned_and_shared_secret_tokens_are_refused(provider: OidcProvider) -> None:
    verifier = OidcVerifier(OidcSettings(provider.issuer, AUDIENCE, f"{provider.issuer}/jwks", "roles"))
    claims = {"iss": provider.issuer, "aud": AUDIENCE, "sub": "mallory", "exp": 2**31, "roles": [SUPPORT]}
    for forged in (
        jwt.encode(claims, "", "none", headers={"kid": provider.key.kid}),
        jwt.encode(claims, "a-guessed-secret-of-enough-length-0123456789", "HS256", headers={"kid": provider.key.kid}),
        "not.a.jwt",
    ):
        with pytest.raises(Unauthenticated):
            await verifier.verify(forged)


async def test_a_remembered_token_still_stops_working_when_it_expires(provider: OidcProvider) -> None:
    verifier = OidcVerifier(OidcSettings(provider.issuer, AUDIENCE, "", "roles"))
    # Expired 28 s ago: within the 30 s of skew allowed for 2 s more.
    token = provider.token([SUPPORT], exp=int(time.time()) - LEEWAY_SECONDS + 2)
    assert (await verifier.verify(token)).roles == {SUPPORT}
    await asyncio.sleep(3)
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier.verify(token)
