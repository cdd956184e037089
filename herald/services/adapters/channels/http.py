"""One way for provider plug-ins to make an HTTP call: the account's timeout, a client span, and transport
failures classified, so each plug-in only reads the provider's answer."""

import contextlib
import functools
import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import yarl
from opentelemetry import trace

from herald.libs import telemetry
from herald.services.adapters.channels.base import Account, DeliveryError, Failure, Provider

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
    with client_span(account, method, url) as span:
        telemetry.inject(outgoing)
        try:
            async with provider.http.request(
                method,
                url,
                headers=outgoing,
                json=json_body,
                data=data,
                allow_redirects=False,
                timeout=_timeout(account.timeout),
            ) as response:
                # Header names are case-insensitive (HTTP/2 sends them in lower case): aiohttp's stay so.
                result = Response(response.status, response.headers, await response.read())
        except (TimeoutError, aiohttp.ClientError) as e:
            raise no_answer(account, span, e) from e
        answered(span, result.status)
    return result


@functools.cache
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


def client_span(account: Account, method: str, url: str) -> AbstractContextManager[trace.Span]:
    """The CLIENT span of one provider call, with OpenTelemetry's HTTP attributes. `url.full` leaves out the user
    info, query and fragment: tokens and signatures travel there. Within a span no one records, none (as
    bus.tracing.producing): a child would not be recorded either, and the trace's context still goes out."""
    current = trace.get_current_span()
    if not current.is_recording():
        return contextlib.nullcontext(current)
    parsed = yarl.URL(url)
    return _tracer.start_as_current_span(
        f"{method} {account.provider}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "http.request.method": method,
            "url.full": str(parsed.with_user(None).with_query(None).with_fragment(None)),
            "server.address": parsed.host or "",
            "server.port": parsed.port or 0,
            "herald.provider_account": account.name,
        },
        record_exception=False,
        set_status_on_exception=False,
    )


def answered(span: trace.Span, status: int) -> None:
    """The provider's status on the span: a 4xx names the error type, a 5xx is also the span's error."""
    span.set_attribute("http.response.status_code", status)
    if status >= 400:
        span.set_attribute("error.type", str(status))
    if status >= 500:
        span.set_status(trace.Status(trace.StatusCode.ERROR))


# A call's time running out, as each client herald's providers use says it: asyncio's and aiohttp's (TimeoutError)
# and httpx's (HTTP/2, for APNs).
TIMEOUTS = (TimeoutError, httpx.TimeoutException)


def no_answer(account: Account, span: trace.Span, error: Exception) -> DeliveryError:
    """A call that got no answer, marked on its span: retryable, saying whether its time ran out or the provider
    could not be reached."""
    failed(span, error)
    if isinstance(error, TIMEOUTS):
        return DeliveryError(f"{account.name} timed out after {account.timeout:g}s", Failure.RETRYABLE)
    return DeliveryError(f"{account.name} unreachable: {str(error) or repr(error)}", Failure.RETRYABLE)


def failed(span: trace.Span, error: Exception) -> None:
    """No answer at all: the transport's failure is the error."""
    span.set_attribute("error.type", type(error).__qualname__)
    span.set_status(trace.Status(trace.StatusCode.ERROR))


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
