"""A company's OpenID Connect provider on loopback, as herald sees one: a discovery document naming its JWKS, the
JWKS itself (the public half of its signing key, which it can rotate), and tokens it mints for operators; and, for
the console, the authorization code flow with PKCE (RFC 7636) as a browser meets it: /authorize signs in whoever
the test chose (`sign_in_as`) and sends the browser back with a code, /token trades the code and the verifier for
an access token, and both discovery and /token answer pages of other origins (CORS), as providers do."""

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

AUDIENCE = "herald"
CORS = {"Access-Control-Allow-Origin": "*"}


class SigningKey:
    def __init__(self) -> None:
        self.kid = secrets.token_hex(4)
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}


@dataclass(frozen=True)
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    subject: str
    roles: list[str]


class OidcProvider:
    def __init__(self) -> None:
        self.key = SigningKey()
        # Who the next browser sent to /authorize signs in as, and with which roles.
        self.signing_in: tuple[str, list[str]] = ("ann@example.com", [])
        self._codes: dict[str, Grant] = {}
        # How often herald fetched the keys.
        self.jwks_fetches = 0
        self._runner: web.AppRunner | None = None
        self.issuer = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_route("OPTIONS", "/token", self._preflight)
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

    def sign_in_as(self, subject: str, roles: list[str]) -> None:
        self.signing_in = (subject, roles)

    async def _discovery(self, _: web.Request) -> web.Response:
        document = {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/jwks",
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "code_challenge_methods_supported": ["S256"],
        }
        return web.json_response(document, headers=CORS)

    async def _authorize(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            raise web.HTTPBadRequest(text="the authorization code flow with PKCE (S256) only")
        code = secrets.token_urlsafe(16)
        subject, roles = self.signing_in
        self._codes[code] = Grant(query["client_id"], query["redirect_uri"], query["code_challenge"], subject, roles)
        raise web.HTTPFound(f"{query['redirect_uri']}?code={code}&state={query.get('state', '')}")

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = self._codes.pop(str(form.get("code", "")), None)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (
            grant is None
            or form.get("grant_type") != "authorization_code"
            or form.get("client_id") != grant.client_id
            or form.get("redirect_uri") != grant.redirect_uri
            or challenge != grant.challenge
        ):
            return web.json_response({"error": "invalid_grant"}, status=400, headers=CORS)
        token = self.token(grant.roles, subject=grant.subject)
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": 300}, headers=CORS)

    async def _preflight(self, _: web.Request) -> web.Response:
        return web.Response(headers={**CORS, "Access-Control-Allow-Headers": "content-type"})

    async def _jwks(self, _: web.Request) -> web.Response:
        self.jwks_fetches += 1
        return web.json_response({"keys": [self.key.jwk()]})
