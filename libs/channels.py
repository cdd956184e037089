"""The channel ids herald knows. A channel is a lower-case string, so adding one needs no proto change."""

import re
from collections.abc import Sequence

import yarl
from herald.v1 import admin_service_pb2

from libs.errors import InvalidArgument

KNOWN = ("webhook", "email", "sms", "inbox", "wecom", "dingtalk", "feishu", "slack", "apns", "fcm")

# Channels addressed by the user id itself rather than by an address.
ADDRESSED_BY_USER_ID = frozenset({"inbox"})

_ID = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def problem(channel: str) -> str | None:
    """Why `channel` is not a channel herald knows, or None."""
    if not _ID.match(channel) or channel not in KNOWN:
        return f"unknown channel '{channel[:40]}'; known channels: {', '.join(KNOWN)}"
    return None


def max_address_chars(channel: str) -> int:
    """How long an address of `channel` may be: what the columns that hold it take. The inbox keeps its address
    (the user id, unless a request gives another) beside each item, in 200 characters."""
    return 200 if channel == "inbox" else 2048


def webhook_url_problem(url: str) -> str:
    """Why `url` cannot be a webhook's address ("" when it can). Judged by yarl, the parser of the HTTP client
    that sends it, so what passes here is what the request goes to; such a URL fails on every attempt, so it is
    refused where it comes in (a Send, the directory) and is a permanent failure if one reaches the adapters."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return "must not contain spaces or control characters"
    try:
        parsed = yarl.URL(url)
        host, port = parsed.host, parsed.port
    except ValueError as e:
        return f"not a URL: {e}"
    if parsed.scheme not in ("http", "https") or not host:
        return "must be an http:// or https:// URL with a host"
    if port is not None and not 0 < port < 65536:
        return f"port {port} is out of range"
    return ""


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
