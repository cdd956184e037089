"""The SSRF guard for outgoing webhooks: a caller-supplied URL must not reach herald's own network.

A host is refused when any address it resolves to is private, loopback,
link-local, multicast, reserved or unspecified, unless the operator listed the
host in HERALD_WEBHOOK_ALLOWED_HOSTS. Redirects are never followed, so a public
endpoint cannot bounce a request inward.

It is checked twice: `check` before the call, for a clear refusal (and for an
address written as an IP, which the HTTP client does not resolve), and
`GuardedResolver` as the client connects - the addresses checked are the ones
connected to, so a name that resolves to a public address for the check and to
a private one a moment later (DNS rebinding) is still refused.
"""

import asyncio
import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from libs import channels


class BlockedDestination(OSError):
    """An OSError, so that the HTTP client, resolving as it connects, reports it as a failure to connect."""


async def check(url: str, allowed_hosts: frozenset[str]) -> None:
    try:
        parsed = channels.webhook_url(url)
    except ValueError as e:
        raise BlockedDestination(str(e)) from None
    host = (parsed.host or "").lower()
    if host in allowed_hosts:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parsed.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise BlockedDestination(f"host '{host}' does not resolve: {e.strerror}") from e
    _refuse_private(host, (info[4][0] for info in infos))


def _refuse_private(host: str, addresses: Any) -> None:
    for text in addresses:
        address = ipaddress.ip_address(text)
        if not address.is_global or address.is_multicast:
            raise BlockedDestination(
                f"host '{host}' resolves to non-public address {address}; "
                "an operator can allow it in HERALD_WEBHOOK_ALLOWED_HOSTS"
            )


class GuardedResolver(AbstractResolver):
    """The resolver of the webhooks' HTTP client: what a host resolves to as the client connects is checked."""

    def __init__(self, allowed_hosts: frozenset[str]) -> None:
        self._inner = aiohttp.DefaultResolver()
        self._allowed = allowed_hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if host.lower() not in self._allowed:
            _refuse_private(host, (result["host"] for result in found))
        return found

    async def close(self) -> None:
        await self._inner.close()
