"""The fcm channel: Firebase Cloud Messaging HTTP v1, authenticated as a Google service account.

The account's one secret is the service account's JSON key file. Herald signs an RS256 JWT with its private
key and trades it at the file's token_uri for an OAuth access token (the two-legged flow of
https://developers.google.com/identity/protocols/oauth2/service-account#httprest), then sends with
https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send. The access token lives about
an hour; it is cached per account and fetched once for all sends waiting on it. Errors carry a
google.rpc.Status whose details name an FCM ErrorCode
(https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode).
"""

import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
from herald.v1 import common_pb2

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels import http
from herald.services.adapters.channels.base import Account, DeliveryError, Failure, Provider, Sent
from herald.services.adapters.channels.provider_tokens import AccessToken

DEFAULT_ENDPOINT = "https://fcm.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google caps an assertion's lifetime at an hour.
_ASSERTION_LIFETIME = 3600
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


@dataclass(frozen=True)
class _ServiceAccount:
    client_email: str
    private_key: str
    private_key_id: str
    token_uri: str
    project_id: str


class Fcm(Provider):
    channel = "fcm"
    # FCM has no idempotency key: a repeated send is a second notification.
    idempotent = False

    def __init__(self, account: Account, http: aiohttp.ClientSession) -> None:
        super().__init__(account, http)
        self._access_token = AccessToken(lambda: self._fetch_token(self._service_account()))

    async def send(self, job: work_pb2.DeliveryJob) -> Sent:
        service_account = self._service_account()
        token, fresh = await self._access_token.get()
        android: dict[str, object] = {"priority": "high" if job.category == common_pb2.CATEGORY_CRITICAL else "normal"}
        if job.HasField("expire_at"):
            android["ttl"] = f"{max(0, job.expire_at.seconds - int(time.time()))}s"
        if job.badge:  # AndroidNotification.notification_count: the number the launcher shows
            android["notification"] = {"notification_count": job.badge}
        message = {
            "token": job.address,
            "notification": {"title": job.subject, "body": job.body},
            "data": dict(job.data),
            "android": android,
        }
        url = f"{self.account.url(DEFAULT_ENDPOINT)}/v1/projects/{service_account.project_id}/messages:send"
        response = await http.call(
            self, "POST", url, headers={"Authorization": f"Bearer {token}"}, json_body={"message": message}
        )
        if response.ok:
            return Sent(provider_message_id=str(response.json().get("name", "")))
        raise self._error(response, service_account, fresh)

    def _service_account(self) -> _ServiceAccount:
        name = self.account.name
        try:
            key = json.loads(self.account.secret("service_account_json"))
        except ValueError as e:
            raise DeliveryError(
                f"account {name}: 'service_account_json' is not JSON: {e}", Failure.BAD_CREDENTIALS
            ) from e
        fields = ("client_email", "private_key", "token_uri", "project_id")
        if missing := [f for f in fields if not isinstance(key, dict) or not isinstance(key.get(f), str)]:
            raise DeliveryError(
                f"account {name}: 'service_account_json' is not a Google service-account key file "
                f"(no {', '.join(missing)})",
                Failure.BAD_CREDENTIALS,
            )
        return _ServiceAccount(
            client_email=key["client_email"],
            private_key=key["private_key"],
            private_key_id=str(key.get("private_key_id", "")),
            token_uri=key["token_uri"],
            project_id=key["project_id"],
        )

    async def _fetch_token(self, service_account: _ServiceAccount) -> tuple[str, float]:
        response = await http.call(
            self,
            "POST",
            service_account.token_uri,
            data={"grant_type": _JWT_BEARER, "assertion": self._assertion(service_account)},
        )
        answer = _json_object(response)
        if not response.ok:
            raise self._token_error(response, answer)
        token = str(answer.get("access_token", ""))
        if not token:
            raise DeliveryError(
                f"{self.account.name}: Google's token endpoint answered without an access_token", Failure.RETRYABLE
            )
        return token, float(answer.get("expires_in", _ASSERTION_LIFETIME))

    def _assertion(self, service_account: _ServiceAccount) -> str:
        now = int(time.time())
        claims = {
            "iss": service_account.client_email,
            "scope": SCOPE,
            "aud": service_account.token_uri,
            "iat": now,
            "exp": now + _ASSERTION_LIFETIME,
        }
        headers = {"kid": service_account.private_key_id} if service_account.private_key_id else None
        try:
            return jwt.encode(claims, service_account.private_key, "RS256", headers=headers)
        except (ValueError, jwt.PyJWTError) as e:
            raise DeliveryError(
                f"account {self.account.name}: the private_key in 'service_account_json' is not an RSA key: {e}",
                Failure.BAD_CREDENTIALS,
            ) from e

    def _token_error(self, response: http.Response, answer: dict[str, Any]) -> DeliveryError:
        detail = ": ".join(str(answer[k]) for k in ("error", "error_description") if answer.get(k))
        if response.status in (400, 401) and answer.get("error"):
            # invalid_grant, invalid_client, unauthorized_client: the key was deleted, disabled or never valid.
            return DeliveryError(
                f"{self.account.name}: Google refused the service account ({detail}); "
                "check that 'service_account_json' holds a current key of an enabled service account",
                Failure.BAD_CREDENTIALS,
            )
        return http.status_error(f"{self.account.name} token endpoint", response, detail)

    def _error(self, response: http.Response, service_account: _ServiceAccount, fresh: bool) -> DeliveryError:
        error = _json_object(response).get("error")
        error = error if isinstance(error, dict) else {}
        details = [d for d in error.get("details", []) if isinstance(d, dict)]
        fcm_code = next((str(d.get("errorCode", "")) for d in details if d.get("@type") == _FCM_ERROR_TYPE), "")
        violations = [v for d in details for v in d.get("fieldViolations", []) if isinstance(v, dict)]
        code = fcm_code or str(error.get("status", ""))
        message = str(error.get("message", ""))
        said = f"{self.account.name}: FCM answered HTTP {response.status} {code or '(no status)'}" + (
            f" ({message})" if message else ""
        )
        retry_after = response.retry_after()
        if code == "UNREGISTERED":
            return DeliveryError(
                f"{said}: the device token is no longer registered (the app was removed or the token expired)",
                Failure.DEAD_ADDRESS,
            )
        if code == "INVALID_ARGUMENT":
            if "registration token" in message.lower() or any(v.get("field") == "message.token" for v in violations):
                return DeliveryError(f"{said}: the device token is not a valid FCM token", Failure.DEAD_ADDRESS)
            fields = "; ".join(f"{v.get('field', '')}: {v.get('description', '')}" for v in violations)
            return DeliveryError(f"{said}" + (f": {fields}" if fields else ""), Failure.PERMANENT)
        if code == "SENDER_ID_MISMATCH":
            return DeliveryError(
                f"{said}: the device token belongs to another Firebase project than {service_account.project_id}",
                Failure.BAD_CREDENTIALS,
            )
        if code == "THIRD_PARTY_AUTH_ERROR":
            return DeliveryError(
                f"{said}: the APNs key or web push credentials uploaded to Firebase project "
                f"{service_account.project_id} were refused",
                Failure.BAD_CREDENTIALS,
            )
        if code == "QUOTA_EXCEEDED":
            return DeliveryError(said, Failure.RATE_LIMITED, retry_after=retry_after)
        if code in ("UNAVAILABLE", "INTERNAL"):
            return DeliveryError(said, Failure.RETRYABLE, retry_after=retry_after)
        if response.status == 401:
            # The access token was revoked or lapsed early: fetch another next time. Only one Google issued
            # moments ago being refused says the account itself is wrong.
            self._access_token.forget()
            if fresh:
                return DeliveryError(f"{said}: a new access token was refused", Failure.BAD_CREDENTIALS)
            return DeliveryError(f"{said}: a new access token is fetched for the next attempt", Failure.RETRYABLE)
        if response.status == 403:
            return DeliveryError(
                f"{said}: check that the service account may send for project {service_account.project_id} "
                "and that the Firebase Cloud Messaging API is enabled",
                Failure.BAD_CREDENTIALS,
            )
        return http.status_error(self.account.name, response, f"{code} ({message})" if message else code)


def _json_object(response: http.Response) -> dict[str, Any]:
    body = response.json()
    return body if isinstance(body, dict) else {}
