"""Page tokens and sizes for List RPCs: a token is the last key of the previous page, opaque to callers."""

import base64
from collections.abc import Callable

from herald.libs.errors import InvalidArgument

MAX_PAGE = 1000
DEFAULT_PAGE = 50


def page_size(requested: int, default: int = DEFAULT_PAGE, most: int = MAX_PAGE) -> int:
    if not 0 <= requested <= most:
        raise InvalidArgument({"page_size": f"between 0 and {most}"})
    return requested or default


def encode(last_key: str) -> str:
    return base64.urlsafe_b64encode(last_key.encode()).decode()


def decode(token: str, is_key: Callable[[str], bool]) -> str:
    """The key to continue after ("" for the first page); a token this API did not issue is INVALID_ARGUMENT."""
    if not token:
        return ""
    try:
        key = base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        key = ""
    if not key or not is_key(key):
        raise InvalidArgument({"page_token": "not a token this API returned"})
    return key
