"""The webhook SSRF guard refuses herald's own network unless an operator allowed the host: an address written as
an IP before the call, a name as the HTTP client resolves it to connect."""

import pytest

from herald.libs import ssrf


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://10.1.2.3/x",
        "http://192.168.0.10/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://0.0.0.0/x",
    ],
)
def test_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(ssrf.BlockedDestination, match="HERALD_WEBHOOK_ALLOWED_HOSTS"):
        ssrf.check(url, frozenset())


async def test_a_name_that_resolves_privately_is_refused_as_the_client_connects() -> None:
    with pytest.raises(ssrf.BlockedDestination, match="HERALD_WEBHOOK_ALLOWED_HOSTS"):
        await ssrf.resolve("localhost", 80, frozenset())


async def test_allowed_hosts_pass() -> None:
    ssrf.check("http://127.0.0.1:8080/x", frozenset({"127.0.0.1"}))
    assert "127.0.0.1" in await ssrf.resolve("localhost", 80, frozenset({"localhost"}))


def test_a_public_address_passes() -> None:
    ssrf.check("https://93.184.215.14/hook", frozenset())


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x", "http:///nohost"])
def test_other_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(ssrf.BlockedDestination):
        ssrf.check(url, frozenset())
