"""A mesh whose binaries trust a test OpenID Connect provider on loopback, shared by the tests of operators'
sign-in, roles and audit trail."""

from collections.abc import AsyncIterator

import pytest

from devmesh.mesh import Mesh
from tests.conftest import running_mesh
from tests.helpers.client import Herald
from tests.helpers.databases import default_backend
from tests.helpers.oidc_provider import AUDIENCE, OidcProvider

SignedIn = tuple[OidcProvider, Mesh, Herald]


@pytest.fixture(scope="package")
async def signed_in(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SignedIn]:
    provider = OidcProvider()
    await provider.start()
    env = {"HERALD_OIDC_ISSUER": provider.issuer, "HERALD_OIDC_AUDIENCE": AUDIENCE}
    try:
        async with running_mesh(tmp_path_factory.mktemp("oidc"), default_backend(), env) as (mesh, herald):
            yield provider, mesh, herald
    finally:
        await provider.stop()
