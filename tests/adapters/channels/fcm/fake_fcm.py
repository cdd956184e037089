"""A local FCM: Google's OAuth token endpoint and the FCM HTTP v1 messages:send, on one aiohttp app.

The token endpoint verifies the service account's RS256 assertion as Google documents it (grant_type
jwt-bearer; iss = client_email, scope, aud = token_uri, iat, exp at most an hour later), independently of
herald's code, and issues bearer tokens; messages:send accepts only a token it issued, for its project.
Errors are google.rpc.Status JSON with FcmError details, as in Google's error reference.
"""

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web

from tests.adapters.channels.fake_provider import FakeHttpProvider

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_:\-]{100,}$")
_RESERVED_DATA_KEYS = ("from", "gcm", "message_type")


@dataclass(frozen=True)
class Received:
    authorization: str
    message: dict[str, Any]


@dataclass
class FakeFcm(FakeHttpProvider[Received]):
    project_id: str
    client_email: str
    # The public half of the service account's key: what Google holds to verify assertions.
    public_key: str
    # The verified claims of every assertion traded for an access token.
    assertions: list[dict[str, Any]] = field(default_factory=list)
    # Knobs a test turns.
    outage: bool = False
    token_outage: bool = False
    quota_exceeded: bool = False
    third_party_auth_error: bool = False
    unregistered: set[str] = field(default_factory=set)
    other_sender: set[str] = field(default_factory=set)
    issued: set[str] = field(default_factory=set)
    _message_ids: int = 0

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/token", self._token), web.post("/v1/projects/{project}/messages:send", self._send)]

    def revoke_tokens(self) -> None:
        self.issued.clear()

    async def _token(self, request: web.Request) -> web.Response:
        if self.token_outage:
            return web.json_response({"error": "internal_failure"}, status=503)
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            claims = jwt.decode(
                str(form.get("assertion", "")),
                self.public_key,
                algorithms=["RS256"],
                audience=self.token_uri,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.InvalidSignatureError:
            return _invalid_grant("Invalid JWT Signature.")
        except jwt.PyJWTError as e:
            return _invalid_grant(f"Invalid JWT: {e}")
        if claims["iss"] != self.client_email:
            return _invalid_grant("Invalid JWT: unknown issuer.")
        if claims["exp"] - claims["iat"] > 3600:
            return _invalid_grant(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
            )
        if SCOPE not in str(claims["scope"]).split():
            return web.json_response(
                {"error": "invalid_scope", "error_description": "Invalid OAuth scope."}, status=400
            )
        self.assertions.append(claims)
        token = f"ya29.{secrets.token_urlsafe(24)}"
        self.issued.add(token)
        return web.json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    async def _send(self, request: web.Request) -> web.Response:
        await self.stall()
        authorization = request.headers.get("Authorization", "")
        if authorization.removeprefix("Bearer ") not in self.issued:
            return _status(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential.",
            )
        project = request.match_info["project"]
        if project != self.project_id:
            return _status(
                403,
                "PERMISSION_DENIED",
                f"Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).",
            )
        body = await request.json()
        message = body["message"]
        self.received.append(Received(authorization, message))
        token = message.get("token", "")
        if self.outage:
            return _status(503, "UNAVAILABLE", "The service is currently unavailable.", fcm_error="UNAVAILABLE")
        if self.quota_exceeded:
            return _status(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Send requests' of service 'fcm.googleapis.com'.",
                fcm_error="QUOTA_EXCEEDED",
                headers={"Retry-After": "60"},
            )
        if reserved := [k for k in message.get("data", {}) if k in _RESERVED_DATA_KEYS or k.startswith("google")]:
            return _status(
                400,
                "INVALID_ARGUMENT",
                f"Invalid data payload key: {reserved[0]}",
                violations=[("message.data", f"Invalid data payload key: {reserved[0]}")],
            )
        android = message.get("android", {})
        if android.get("priority", "normal") not in ("normal", "high"):
            return _status(400, "INVALID_ARGUMENT", "Invalid value at 'message.android.priority'")
        if "ttl" in android and not re.fullmatch(r"\d+(\.\d{1,9})?s", android["ttl"]):
            return _status(
                400,
                "INVALID_ARGUMENT",
                "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)",
            )
        if not _TOKEN_PATTERN.match(token):
            return _status(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                fcm_error="INVALID_ARGUMENT",
            )
        if token in self.unregistered:
            return _status(404, "NOT_FOUND", "Requested entity was not found.", fcm_error="UNREGISTERED")
        if token in self.other_sender:
            return _status(403, "PERMISSION_DENIED", "SenderId mismatch", fcm_error="SENDER_ID_MISMATCH")
        if self.third_party_auth_error:
            return _status(
                401,
                "UNAUTHENTICATED",
                "Auth error from APNS or Web Push Service",
                fcm_error="THIRD_PARTY_AUTH_ERROR",
            )
        self._message_ids += 1
        return web.json_response({"name": f"projects/{project}/messages/0:{int(time.time())}{self._message_ids:06d}"})


def _invalid_grant(description: str) -> web.Response:
    return web.json_response({"error": "invalid_grant", "error_description": description}, status=400)


def _status(
    code: int,
    status: str,
    message: str,
    *,
    fcm_error: str = "",
    violations: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    details: list[dict[str, Any]] = []
    if fcm_error:
        details.append({"@type": _FCM_ERROR, "errorCode": fcm_error})
    if violations:
        details.append(
            {"@type": _BAD_REQUEST, "fieldViolations": [{"field": f, "description": d} for f, d in violations]}
        )
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=code, headers=headers)
