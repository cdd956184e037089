"""The shared mesh's herald-gateway (tests/conftest.py starts it), and an HTTP client for it."""

from collections.abc import AsyncIterator

import httpx
import pytest

from devmesh.mesh import Mesh
from tests.helpers.client import Herald


@pytest.fixture
async def http(shared_mesh: tuple[Mesh, Herald]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shared_mesh[0].gateway_url, timeout=30) as client:
        yield client
