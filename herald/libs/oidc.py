"""Operators sign in with the company's OpenID Connect provider: herald takes the provider's JWT (an access or ID
token) as `authorization: Bearer <jwt>` and verifies it against the issuer's published keys (its JWKS), its
issuer, audience and expiry. The keys are cached; a token signed with a key id the cache lacks (the provider
rotated its keys) fetches them again, at most every REFETCH_SECONDS, so a flood of forged key ids cannot turn
herald into a client hammering the provider. A verified token is remembered for up to VERIFIED_SECONDS (never past
its expiry), so a console or heraldctl making call after call with one token pays for its signature once."""

import asyncio
import time
from typing import Any

import aiohttp
import jwt

from herald.libs.config import OidcSettings
from herald.libs.errors import Unauthenticated, Unavailable
from herald.libs.roles import ROLES, Operator

# Signature algorithms herald accepts: asymmetric only, so a token cannot be forged with a shared secret (nor with
# "none"); RS256 is what providers use by default.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
# Clock skew tolerated on exp, nbf and iat between herald and the provider.
LEEWAY_SECONDS = 30
# The least time between two fetches of the keys that an unknown key id causes.
REFETCH_SECONDS = 10.0
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=5)
# How long a verified token is taken on trust again, and how many such tokens a process remembers.
VERIFIED_SECONDS = 60.0
MAX_VERIFIED = 10_000


class OidcVerifier:
    def __init__(self, settings: OidcSettings) -> None:
        self._settings = settings
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -REFETCH_SECONDS
        self._fetching = asyncio.Lock()
        self._verified: dict[str, tuple[float, Operator]] = {}

    async def verify(self, token: str) -> Operator:
        remembered = self._verified.get(token)
        if remembered is not None and remembered[0] > time.time():
            return remembered[1]
        operator, expires = await self._verify(token)
        if len(self._verified) >= MAX_VERIFIED:
            self._verified.clear()
        self._verified[token] = (min(expires, time.time() + VERIFIED_SECONDS), operator)
        return operator

    async def _verify(self, token: str) -> tuple[Operator, float]:
        """The token's operator, and until when the token verifies."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token is not an API key, an inbox token or a signed JWT") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALGORITHMS:
            raise Unauthenticated(f"the token's algorithm {str(algorithm)[:16]!r} is not accepted")
        key = await self._key(str(kid or ""))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired: sign in again") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("the token was not issued for herald (its audience)") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the token was not issued by herald's identity provider") from None
        except jwt.PyJWTError as e:
            raise Unauthenticated(f"the token does not verify: {e}") from None
        operator = Operator(str(claims["sub"]), self._roles(claims.get(self._settings.roles_claim)))
        return operator, float(claims["exp"]) + LEEWAY_SECONDS

    @staticmethod
    def _roles(claim: object) -> frozenset[str]:
        named = claim.split() if isinstance(claim, str) else claim if isinstance(claim, list) else []
        return frozenset(role for role in named if role in ROLES)

    async def _key(self, kid: str) -> jwt.PyJWK:
        if kid not in self._keys:
            async with self._fetching:
                if kid not in self._keys and time.monotonic() - self._fetched_at >= REFETCH_SECONDS:
                    self._keys = await self._fetch_keys()
                    self._fetched_at = time.monotonic()
        if (key := self._keys.get(kid)) is None:
            raise Unauthenticated("the token is signed with a key herald's identity provider does not publish")
        return key

    async def _fetch_keys(self) -> dict[str, jwt.PyJWK]:
        try:
            async with aiohttp.ClientSession(timeout=FETCH_TIMEOUT) as http:
                url = self._settings.jwks_url or await self._discovered_jwks_url(http)
                async with http.get(url) as reply:
                    reply.raise_for_status()
                    keys = jwt.PyJWKSet.from_dict(await reply.json(content_type=None)).keys
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, jwt.PyJWKSetError) as e:
            raise Unavailable(f"cannot fetch the identity provider's keys: {e!r}"[:300]) from None
        return {str(key.key_id or ""): key for key in keys}

    async def _discovered_jwks_url(self, http: aiohttp.ClientSession) -> str:
        discovery = self._settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        async with http.get(discovery) as reply:
            reply.raise_for_status()
            document = await reply.json(content_type=None)
        return str(document["jwks_uri"])
