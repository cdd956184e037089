"""A company's OpenID Connect provider on loopback, as herald sees one: a discovery document naming its JWKS, the
JWKS itself (the public half of its signing key, which it can rotate), and tokens it mints for operators."""

import secrets
import time
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

AUDIENCE = "herald"


class SigningKey:
    def __init__(self) -> None:
        self.kid = secrets.token_hex(4)
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}


class OidcProvider:
    def __init__(self) -> None:
        self.key = SigningKey()
        # How often herald fetched the keys.
        self.jwks_fetches = 0
        self._runner: web.AppRunner | None = None
        self.issuer = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.issuer = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def rotate(self) -> None:
        """A new signing key, and only it published: tokens of the old one stop verifying once herald refetches."""
        self.key = SigningKey()

    def token(
        self, roles: list[str], subject: str = "ann@example.com", key: SigningKey | None = None, **claims: Any
    ) -> str:
        """A token as the provider issues it to a signed-in operator (or as `key` would sign it); `claims`
        overrides any of it."""
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + 300, "roles": roles}
        signer = key or self.key
        return jwt.encode({**payload, **claims}, signer.private, "RS256", headers={"kid": signer.kid})

    async def _discovery(self, _: web.Request) -> web.Response:
        return web.json_response({"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks"})

    async def _jwks(self, _: web.Request) -> web.Response:
        self.jwks_fetches += 1
        return web.json_response({"keys": [self.key.jwk()]})
