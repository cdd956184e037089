"""One way for provider plug-ins to make an HTTP call: the account's timeout, a client span, and transport
failures classified, so each plug-in only reads the provider's answer."""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict
from opentelemetry import trace

from libs import telemetry
from services.adapters.channels.base import DeliveryError, Failure, Provider

_tracer = telemetry.tracer("herald.providers")
_RETRYABLE_STATUS = frozenset({408, 425, 500, 502, 503, 504})


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON, or {} when it is not JSON (a proxy's HTML error page)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return {}

    def retry_after(self) -> float | None:
        value = self.headers.get("Retry-After", "")
        return float(value) if value.isdigit() else None


async def call(
    provider: Provider,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    data: bytes | str | Mapping[str, str] | None = None,
) -> Response:
    account = provider.account
    outgoing = dict(headers or {})
    with _tracer.start_as_current_span(f"{method} {account.provider}", kind=trace.SpanKind.CLIENT) as span:
        span.set_attribute("http.request.method", method)
        span.set_attribute("herald.provider_account", account.name)
        telemetry.inject(outgoing)
        try:
            async with provider.http.request(
                method,
                url,
                headers=outgoing,
                json=json_body,
                data=data,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=account.timeout),
            ) as response:
                # Header names are case-insensitive (HTTP/2 sends them in lower case): keep them so.
                result = Response(response.status, CIMultiDict(response.headers), await response.read())
        except TimeoutError as e:
            raise DeliveryError(f"{account.name} timed out after {account.timeout:g}s", Failure.RETRYABLE) from e
        except aiohttp.ClientError as e:
            raise DeliveryError(f"{account.name} unreachable: {e}", Failure.RETRYABLE) from e
        span.set_attribute("http.response.status_code", result.status)
    return result


def status_error(account_name: str, response: Response, detail: str = "") -> DeliveryError:
    """What an HTTP error status means when the provider's body says no more than `detail`."""
    said = f"{account_name} answered HTTP {response.status}" + (f": {detail}" if detail else "")
    if response.status == 429:
        return DeliveryError(said, Failure.RATE_LIMITED, retry_after=response.retry_after())
    if response.status in (401, 403):
        return DeliveryError(said, Failure.BAD_CREDENTIALS)
    if response.status in _RETRYABLE_STATUS:
        return DeliveryError(said, Failure.RETRYABLE, retry_after=response.retry_after())
    return DeliveryError(said, Failure.PERMANENT)
