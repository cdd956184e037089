"""A mesh whose binaries trust a test OpenID Connect provider on loopback, with herald-gateway and its console
signing operators in there, shared by the tests of operators' sign-in, roles, audit trail and the console."""

from collections.abc import AsyncIterator

import pytest

from devmesh.mesh import Mesh
from tests.conftest import running_mesh
from tests.helpers.client import Herald
from tests.helpers.databases import default_backend
from tests.helpers.oidc_provider import AUDIENCE, OidcProvider

SignedIn = tuple[OidcProvider, Mesh, Herald]
CONSOLE_CLIENT = "herald-console"
# Only linked to, never reached.
JAEGER_UI = "http://127.0.0.1:16686"


@pytest.fixture(scope="package")
async def signed_in(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SignedIn]:
    provider = OidcProvider()
    await provider.start()
    env = {
        "HERALD_OIDC_ISSUER": provider.issuer,
        "HERALD_OIDC_AUDIENCE": AUDIENCE,
        "HERALD_CONSOLE_CLIENT_ID": CONSOLE_CLIENT,
        "HERALD_CONSOLE_JAEGER_URL": JAEGER_UI,
    }
    try:
        mesh_dir = tmp_path_factory.mktemp("oidc")
        async with running_mesh(mesh_dir, default_backend(), env, gateway=True) as (mesh, herald):
            yield provider, mesh, herald
    finally:
        await provider.stop()
