"""The channel ids herald knows. A channel is a lower-case string, so adding one needs no proto change."""

from collections.abc import Sequence
from functools import lru_cache

import yarl
from herald.v1 import admin_service_pb2

from herald.libs.errors import InvalidArgument

KNOWN = ("webhook", "email", "sms", "inbox", "wecom", "dingtalk", "feishu", "slack", "apns", "fcm")

# Channels addressed by the user id itself rather than by an address.
ADDRESSED_BY_USER_ID = frozenset({"inbox"})

_KNOWN = frozenset(KNOWN)


def problem(channel: str) -> str | None:
    """Why `channel` is not a channel herald knows, or None."""
    if channel in _KNOWN:
        return None
    return f"unknown channel '{channel[:40]}'; known channels: {', '.join(KNOWN)}"


@lru_cache(maxsize=4096)
def address_problem(channel: str, address: str) -> str | None:
    """Why `address` cannot be an address of the known `channel`, or None: longer than the columns that hold it
    take (the inbox keeps its address, the user id unless a request gives another, in 200 characters), or, for a
    webhook, not a URL it can be sent to."""
    if len(address) > (most := 200 if channel == "inbox" else 2048):
        return f"at most {most} characters"
    if channel == "webhook":
        try:
            webhook_url(address)
        except ValueError as e:
            return str(e)
    return None


def webhook_url(url: str) -> yarl.URL:
    """`url` as the HTTP client that sends it (aiohttp, on yarl) reads it, so what passes here is what the request
    goes to. ValueError says why it cannot be a webhook's address: such a URL fails on every attempt, so it is
    refused where it comes in (a Send, the directory) and is a permanent failure if one reaches the adapters."""
    if " " in url or not url.isprintable():  # every other space is unprintable too
        raise ValueError("must not contain spaces or control characters")
    try:
        parsed = yarl.URL(url)  # refuses a backslash in the authority, a port past 65535, ...
    except ValueError as e:
        raise ValueError(f"not a URL: {e}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parsed.port == 0:
        raise ValueError("port 0 is not a port to send to")
    return parsed


def fallback_chain(fallback_channels: Sequence[str], chosen: Sequence[str]) -> list[str]:
    """The chosen channels a template tries one after another, in its order; the other chosen channels
    go out alongside. A chain of one is just a channel."""
    return [c for c in fallback_channels if c in chosen]


def choose(template: admin_service_pb2.Template, requested: Sequence[str]) -> list[str]:
    """The channels a send uses: those requested, each of which needs content in the template, else all
    the template has."""
    available = list(dict.fromkeys(c.channel for c in template.contents))
    missing = {
        f"channels[{i}]": f"template '{template.template_id}' has no content for channel '{c}'"
        for i, c in enumerate(requested)
        if c not in available
    }
    if missing:
        raise InvalidArgument(missing)
    return list(dict.fromkeys(requested)) or available
