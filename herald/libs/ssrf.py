"""The SSRF guard for outgoing webhooks: a caller-supplied URL must not reach herald's own network.

A host is refused when any address it resolves to is private, loopback,
link-local, multicast, reserved or unspecified, unless the operator listed the
host in HERALD_WEBHOOK_ALLOWED_HOSTS. Redirects are never followed, so a public
endpoint cannot bounce a request inward.

A name is checked by `resolve`, which the webhooks' HTTP client
(herald/services/adapters/webhook_client.py) connects through: the addresses checked are the ones connected to,
so a name cannot resolve publicly for a check and privately a moment later (DNS
rebinding), and a delivery over a kept-alive connection costs no lookup. `check`,
before the call, refuses what needs no lookup: a URL that cannot be one, and an
address written as an IP.
"""

import asyncio
import functools
import ipaddress
import re
import socket
from collections.abc import Iterable

from herald.libs import channels

_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)\Z")


class BlockedDestination(OSError):
    """An OSError, so that the HTTP client, resolving as it connects, reports it as a failure to connect."""


@functools.lru_cache(maxsize=4096)
def check(url: str, allowed_hosts: frozenset[str]) -> None:
    """Refuse `url` (BlockedDestination) if it needs no lookup to be refused. What passed is remembered: a receiver's
    URL is checked before every delivery to it, and the answer depends on nothing else."""
    try:
        parsed = channels.webhook_url(url)
    except ValueError as e:
        raise BlockedDestination(str(e)) from None
    host = (parsed.host or "").lower()
    if host in allowed_hosts:
        return
    if _is_ip(host):
        _refuse_private(host, [host])
    elif all(_NUMERIC_LABEL.match(label) for label in host.rstrip(".").split(".")):
        # 2130706433, 127.1, 0x7f.1, 0177.0.0.1, "127.0.0.1.": each C library reads these as an address of its
        # own, not as a name a resolver would be asked about; only a.b.c.d is an address here.
        raise BlockedDestination(f"host '{host}' is an address not written as a.b.c.d; write it in that form")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _refuse_private(host: str, addresses: Iterable[str]) -> None:
    for text in addresses:
        address = ipaddress.ip_address(text)
        if isinstance(address, ipaddress.IPv6Address) and (address.ipv4_mapped or int(address) < 1 << 32):
            address = address.ipv4_mapped or ipaddress.IPv4Address(int(address))  # ::ffff:a.b.c.d, ::a.b.c.d
        if not address.is_global or address.is_multicast:
            raise BlockedDestination(
                f"host '{host}' resolves to non-public address {address}; "
                "an operator can allow it in HERALD_WEBHOOK_ALLOWED_HOSTS"
            )


async def resolve(host: str, port: int, allowed_hosts: frozenset[str]) -> list[str]:
    """The addresses to connect to for `host`, as the webhooks' HTTP client connects: refused (BlockedDestination)
    if any is not public, unless the operator allowed the host. A name that does not resolve is refused too, but an
    allowed one's socket.gaierror is an outage like any other."""
    loop = asyncio.get_running_loop()
    allowed = host.lower() in allowed_hosts
    try:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        if allowed:
            raise
        raise BlockedDestination(f"host '{host}' does not resolve: {e.strerror}") from e
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    if not allowed:
        _refuse_private(host, addresses)
    return addresses
