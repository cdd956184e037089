"""Mask personal addresses before they reach a log line."""

import re

# The @ may come URL-encoded (%40), as in a webhook URL's query or a form body.
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*?(@|%40)([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_PHONE = re.compile(r"(?<![\w-])(\+?\d{1,3})?[\d\s-]{4,}(\d{4})(?![\w-])")


def mask(text: str) -> str:
    """Keep enough to tell addresses apart in support ("a***@example.com", "+86******1234"), no more."""
    text = _EMAIL.sub(r"\1***\2\3", text)
    return _PHONE.sub(lambda m: f"{m.group(1) or ''}******{m.group(2)}", text)
