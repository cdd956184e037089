"""An access token a provider issues for a while (FCM's OAuth2 token, WeCom's access_token), kept per account:
fetched once for all concurrent sends, renewed a margin before it expires, and fetched anew when the provider
refuses it early."""

import asyncio
import time
from collections.abc import Awaitable, Callable

# Renew this long before the provider would expire a token (at most half its lifetime), so no send races expiry.
REFRESH_MARGIN = 300.0

# Fetches a new token: (token, lifetime in seconds).
Fetch = Callable[[], Awaitable[tuple[str, float]]]


class AccessToken:
    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._token = ""
        self._fresh_until = 0.0
        self._lock = asyncio.Lock()

    async def get(self, *, refused: str = "") -> tuple[str, bool]:
        """The cached token unless it is `refused` or about to expire; True when it was fetched for this call."""
        async with self._lock:
            if self._token and self._token != refused and time.monotonic() < self._fresh_until:
                return self._token, False
            token, lifetime = await self._fetch()
            self._token = token
            self._fresh_until = time.monotonic() + lifetime - min(REFRESH_MARGIN, lifetime / 2)
            return token, True

    def forget(self) -> None:
        self._token = ""
