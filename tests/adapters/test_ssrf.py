"""The webhook SSRF guard refuses herald's own network unless an operator allowed the host."""

import pytest

from services.adapters import ssrf


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://10.1.2.3/x",
        "http://192.168.0.10/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://0.0.0.0/x",
    ],
)
async def test_private_destinations_are_refused(url: str) -> None:
    with pytest.raises(ssrf.BlockedDestination, match="HERALD_WEBHOOK_ALLOWED_HOSTS"):
        await ssrf.check(url, frozenset())


async def test_an_allowed_host_passes() -> None:
    await ssrf.check("http://127.0.0.1:8080/x", frozenset({"127.0.0.1"}))


async def test_a_public_address_passes() -> None:
    await ssrf.check("https://93.184.215.14/hook", frozenset())


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x", "http:///nohost"])
async def test_other_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(ssrf.BlockedDestination):
        await ssrf.check(url, frozenset())
