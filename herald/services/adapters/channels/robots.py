"""What the chat providers share: an address that is a webhook URL on the provider's host, and a JSON answer
whose error code (not the HTTP status: DingTalk, Feishu and WeCom answer 200 when they refuse) says what
happened."""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from herald.services.adapters.channels import http
from herald.services.adapters.channels.base import Account, DeliveryError, Failure

# What a code means and what to do about it; a code not listed is a permanent refusal.
Meanings = Mapping[int, tuple[Failure, str]]

# The part of a webhook path after its fixed prefix: the robot's token, in one or more segments.
_TOKEN_PATH = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")


def webhook_url(account: Account, default_endpoint: str, address: str, path: str, *, key_param: str = "") -> str:
    """The address, once it is known to be a webhook on the account's endpoint.

    Addresses come from users, through the directory: calling one unchecked would let anyone make herald
    POST to any host, its own network included. The account's endpoint is the one host robots may live on.
    The robot's token follows `path`, or is the query parameter `key_param` of exactly `path`.
    """
    endpoint = account.url(default_endpoint)
    base, url = urlsplit(endpoint), urlsplit(address)
    prefix = base.path + path
    if key_param:
        on_path = url.path == prefix and bool(parse_qs(url.query).get(key_param, [""])[0])
        shape = f"{endpoint}{path}?{key_param}=..."
    else:
        on_path = url.path.startswith(prefix) and _TOKEN_PATH.fullmatch(url.path[len(prefix) :]) is not None
        shape = f"{endpoint}{path}..."
    if (url.scheme, url.netloc) != (base.scheme, base.netloc) or not on_path or url.fragment:
        raise DeliveryError(f"{account.name}: the address is not a webhook URL of the form {shape}", Failure.PERMANENT)
    return address


@dataclass(frozen=True)
class Answer:
    code: int
    message: str
    body: Mapping[str, Any]
    # Who answered what, to start a reason with.
    said: str
    retry_after: float | None = None

    def error(self, failure: Failure, hint: str = "", *, retry_after: float | None = None) -> DeliveryError:
        # The provider's Retry-After, else the wait its documentation gives.
        wait = (self.retry_after or retry_after) if failure in (Failure.RATE_LIMITED, Failure.RETRYABLE) else None
        return DeliveryError(f"{self.said}; {hint}" if hint else self.said, failure, retry_after=wait)

    def refusal(self, meanings: Meanings, *, retry_after: float | None = None) -> DeliveryError:
        """The error a code stands for; `retry_after` is the documented wait after a rate limit."""
        failure, hint = meanings.get(self.code, (Failure.PERMANENT, ""))
        return self.error(failure, hint, retry_after=retry_after if failure is Failure.RATE_LIMITED else None)


def read(
    account: Account, provider: str, response: http.Response, *, code: str = "errcode", message: str = "errmsg"
) -> Answer:
    """The provider's answer; a response without the code field is a gateway's or proxy's, so its HTTP status
    is all there is to go by."""
    body = response.json()
    value = body.get(code) if isinstance(body, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(body.get(message, ""))
        said = f'{account.name}: {provider} answered {code} {value} "{text}"'
        return Answer(value, text, body, said, response.retry_after())
    if not response.ok:
        raise http.status_error(f"{account.name} ({provider})", response)
    # The message may or may not have gone out; a duplicate in a chat beats a lost alert.
    raise DeliveryError(f"{account.name}: {provider} answered HTTP {response.status} without {code}", Failure.RETRYABLE)
