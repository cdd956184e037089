"""The channel ids herald knows. A channel is a lower-case string, so adding one needs no proto change."""

import re

KNOWN = ("webhook", "email", "sms", "inbox", "wecom", "dingtalk", "feishu", "slack", "apns", "fcm")

# Channels addressed by the user id itself rather than by an address.
ADDRESSED_BY_USER_ID = frozenset({"inbox"})

_ID = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def problem(channel: str) -> str | None:
    """Why `channel` is not a channel herald knows, or None."""
    if not _ID.match(channel) or channel not in KNOWN:
        return f"unknown channel '{channel[:40]}'; known channels: {', '.join(KNOWN)}"
    return None
