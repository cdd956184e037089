"""The apns channel: Apple Push Notification service, token-based (a .p8 signing key, not a certificate).

APNs speaks only HTTP/2, which aiohttp cannot, so this provider owns an httpx HTTP/2 client instead of
using the shared session; it classifies timeouts and connection errors the way `http.call` does.

The provider token is an ES256 JWT (header kid = key id, claims iss = team id, iat). Apple refuses a token
older than an hour (ExpiredProviderToken) and a new token on the same connection more often than every
20 minutes (TooManyProviderTokenUpdates), so one token is reused for 50 minutes; the cache lives on the
provider instance, like the connection it is counted against.

Settings: team_id, key_id (of the .p8 key), bundle_id (the apns-topic), and optionally tls_ca_file (a CA
bundle to trust instead of the system store). Secret: auth_key, the .p8 file's PEM. Development builds
register with the sandbox: give their account the endpoint https://api.sandbox.push.apple.com.

Wire format: https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns
and .../handling-notification-responses-from-apns, .../establishing-a-token-based-connection-to-apns.
"""

import json
import ssl
import time
import uuid

import aiohttp
import httpx
import jwt
from herald.v1 import common_pb2

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels import http
from herald.services.adapters.channels.base import Account, DeliveryError, Failure, Provider, Sent

DEFAULT_ENDPOINT = "https://api.push.apple.com"
# Apple allows a new token at most every 20 minutes and accepts one for up to 60.
_TOKEN_LIFETIME = 50 * 60
# apns-id must be a UUID; deriving it from the delivery id makes a repeat carry the same id.
_APNS_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:herald:apns-id")
_MAX_COLLAPSE_ID_BYTES = 64


_CHECK_KEY = "check the account's key_id, team_id and 'auth_key' (.p8), and that the key is enabled for APNs"
_CHECK_TOPIC = "check the account's bundle_id and that the signing key's team owns that app"
# Apple's documented reasons, with what each means for the delivery and for the person reading it.
_REASONS: dict[str, tuple[Failure, str]] = {
    # Also what a sandbox token sent to production (or the reverse) gets: a misconfigured account must not mark
    # every device dead, so this one is only a refusal of this delivery.
    "BadDeviceToken": (Failure.PERMANENT, "the device token is not valid for this app in this environment"),
    "Unregistered": (Failure.DEAD_ADDRESS, "the device token is no longer active (the app was removed)"),
    "ExpiredToken": (Failure.DEAD_ADDRESS, "the device token has expired"),
    "InvalidProviderToken": (Failure.BAD_CREDENTIALS, _CHECK_KEY),
    "MissingProviderToken": (Failure.BAD_CREDENTIALS, _CHECK_KEY),
    "Forbidden": (Failure.BAD_CREDENTIALS, _CHECK_KEY),
    "BadTopic": (Failure.BAD_CREDENTIALS, _CHECK_TOPIC),
    "MissingTopic": (Failure.BAD_CREDENTIALS, _CHECK_TOPIC),
    "TopicDisallowed": (Failure.BAD_CREDENTIALS, _CHECK_TOPIC),
    # One token from another app must not fail the account, nor be forgotten: the bundle_id may be wrong.
    "DeviceTokenNotForTopic": (Failure.PERMANENT, "the device token belongs to another app than the bundle_id"),
    "PayloadTooLarge": (Failure.PERMANENT, "the notification is larger than APNs accepts (4 KB); shorten it"),
    "TooManyRequests": (Failure.RATE_LIMITED, "too many notifications to this device in a short time"),
    "TooManyProviderTokenUpdates": (Failure.RATE_LIMITED, "the provider token was replaced too often"),
}


class Apns(Provider):
    channel = "apns"
    # APNs does not de-duplicate: apns-collapse-id only makes a repeat replace the first one on the device.
    idempotent = False

    def __init__(self, account: Account, http: aiohttp.ClientSession) -> None:
        super().__init__(account, http)
        self._client: httpx.AsyncClient | None = None
        self._token = ""
        self._token_issued_at = 0.0

    async def send(self, job: work_pb2.DeliveryJob) -> Sent:
        apns_id = str(uuid.uuid5(_APNS_ID_NAMESPACE, job.delivery_id))
        collapse_id = job.delivery_id if len(job.delivery_id.encode()) <= _MAX_COLLAPSE_ID_BYTES else apns_id
        headers = {
            "authorization": f"bearer {self._provider_token()}",
            "apns-topic": self.account.setting("bundle_id"),
            "apns-push-type": "alert",
            "apns-priority": "5" if job.category == common_pb2.CATEGORY_MARKETING else "10",
            "apns-id": apns_id,
            "apns-collapse-id": collapse_id,
        }
        if job.HasField("expire_at"):  # without it APNs keeps the notification for a device that is offline
            headers["apns-expiration"] = str(job.expire_at.seconds)
        aps: dict[str, object] = {"alert": {"title": job.subject, "body": job.body}}
        if job.badge:
            aps["badge"] = job.badge
        payload = {**job.data, "aps": aps}
        url = f"{self.account.url(DEFAULT_ENDPOINT)}/3/device/{job.address}"
        response = await self._post(url, headers, json.dumps(payload).encode())
        if response.status_code == 200:
            return Sent(provider_message_id=response.headers.get("apns-id", apns_id))
        raise self._error(response)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _provider_token(self) -> str:
        now = time.time()
        if not self._token or now - self._token_issued_at >= _TOKEN_LIFETIME:
            claims = {"iss": self.account.setting("team_id"), "iat": int(now)}
            key_id = self.account.setting("key_id")
            try:
                self._token = jwt.encode(claims, self.account.secret("auth_key"), "ES256", headers={"kid": key_id})
            except (ValueError, jwt.PyJWTError) as e:
                raise DeliveryError(
                    f"account {self.account.name}: 'auth_key' is not an APNs .p8 signing key (PEM): {e}",
                    Failure.BAD_CREDENTIALS,
                ) from e
            self._token_issued_at = now
        return self._token

    def _http2(self) -> httpx.AsyncClient:
        if self._client is None:
            # http1=False: APNs answers only HTTP/2, so never let the client fall back to HTTP/1.1.
            context = ssl.create_default_context(cafile=self.account.settings.get("tls_ca_file") or None)
            self._client = httpx.AsyncClient(
                http1=False, http2=True, verify=context, timeout=self.account.timeout, follow_redirects=False
            )
        return self._client

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        account = self.account
        with http.client_span(account, "POST", url) as span:
            try:
                response = await self._http2().post(url, headers=headers, content=body)
            except httpx.TransportError as e:  # its timeouts among them
                raise http.no_answer(account, span, e) from e
            http.answered(span, response.status_code)
        return response

    def _error(self, response: httpx.Response) -> DeliveryError:
        try:
            reason = str(json.loads(response.content).get("reason", ""))
        except (ValueError, AttributeError):
            reason = ""
        said = f"{self.account.name}: APNs answered HTTP {response.status_code} {reason or '(no reason given)'}"
        if reason == "ExpiredProviderToken":
            # Our token aged past Apple's hour (a suspended process, a clock step): sign a fresh one next time.
            self._token = ""
            return DeliveryError(
                f"{said}: a new provider token is signed for the next attempt; check this host's clock if it repeats",
                Failure.RETRYABLE,
            )
        if reason in _REASONS:
            failure, meaning = _REASONS[reason]
            return DeliveryError(f"{said}: {meaning}", failure, retry_after=_retry_after(response))
        if response.status_code == 410:
            return DeliveryError(f"{said}: the device token is no longer active", Failure.DEAD_ADDRESS)
        if response.status_code == 403:
            return DeliveryError(f"{said}: {_CHECK_KEY}", Failure.BAD_CREDENTIALS)
        if response.status_code == 429:
            return DeliveryError(said, Failure.RATE_LIMITED, retry_after=_retry_after(response))
        if response.status_code >= 500:
            return DeliveryError(said, Failure.RETRYABLE, retry_after=_retry_after(response))
        return DeliveryError(said, Failure.PERMANENT)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None
