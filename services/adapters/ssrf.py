"""The SSRF guard for outgoing webhooks: a caller-supplied URL must not reach herald's own network.

A host is refused when any address it resolves to is private, loopback,
link-local, multicast, reserved or unspecified, unless the operator listed the
host in HERALD_WEBHOOK_ALLOWED_HOSTS. Redirects are never followed, so a public
endpoint cannot bounce a request inward.
"""

import asyncio
import ipaddress
import socket

from libs import channels


class BlockedDestination(Exception):
    pass


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
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise BlockedDestination(
                f"host '{host}' resolves to non-public address {address}; "
                "an operator can allow it in HERALD_WEBHOOK_ALLOWED_HOSTS"
            )
