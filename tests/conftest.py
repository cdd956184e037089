"""Shared fixtures: a running mesh (real nats-server, real database, four OS processes), a webhook sink, fake SMS
providers that accept the credentials the mesh's provider accounts name (PROVIDER_ENV), and heraldctl pointed at
the mesh."""

import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner, Result

from devmesh.mesh import Mesh, free_port
from herald.libs.config import normalize_database_url
from herald.tools.heraldctl.main import cli
from tests.adapters.channels.apns.conftest import BUNDLE_ID, KEY_ID, TEAM_ID, p8_key, pem
from tests.adapters.channels.apns.fake_apns import FakeApns
from tests.adapters.channels.sms.fake_alibaba import FakeAlibaba
from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.helpers.client import Herald
from tests.helpers.databases import backends, database_env, fresh_postgres
from tests.helpers.webhook_sink import WebhookSink

ADMIN_TOKEN = secrets.token_urlsafe(16)
WEBHOOK_SECRET = secrets.token_urlsafe(16)
INBOX_TOKEN_SECRET = secrets.token_urlsafe(16)
TRACKING_SECRET = secrets.token_urlsafe(16)
UNSUBSCRIBE_SECRET = secrets.token_urlsafe(16)
# The .p8 key APNs accounts in tests sign with; the fake APNs holds its public half.
APNS_KEY = p8_key()
# Credentials the provider accounts in tests reference (ProviderAccount.credentials); the fakes expect them.
PROVIDER_ENV = {
    "HERALD_PROVIDER_TEST_KEY_ID": "LTAI-test-key",
    "HERALD_PROVIDER_TEST_SECRET": secrets.token_urlsafe(16),
    "HERALD_PROVIDER_TEST_APNS_KEY": pem(APNS_KEY),
}
# The browser origins the tests' gateways let call the API (CORS): one no test serves a page from, and the
# loopback address this worker serves its pages from (tests/gateway/test_browser_inbox.py).
GATEWAY_ORIGIN = "http://console.test"
PAGE_ORIGIN = f"http://127.0.0.1:{free_port()}"
# The production schedules wait minutes to hours; tests keep their shape (a few retries, growing) in seconds.
RETRY_BACKOFF = {
    "HERALD_RETRY_BACKOFF_CRITICAL": "0.5,0.5,1",
    "HERALD_RETRY_BACKOFF_NOTIFICATION": "0.5,1,1",
    "HERALD_RETRY_BACKOFF_MARKETING": "0.5,1",
}


@asynccontextmanager
async def running_mesh(
    data_dir: Path,
    backend: str,
    env: Mapping[str, str] | None = None,
    nats_url: str | None = None,
    gateway: bool = False,
) -> AsyncIterator[tuple[Mesh, Herald]]:
    """The four binaries, and their own nats-server unless `nats_url` names one (or a cluster's, comma-separated);
    with `gateway`, herald-gateway in front of them, which lets pages of GATEWAY_ORIGIN and PAGE_ORIGIN call it."""
    with database_env(backend) as db_env:
        mesh = Mesh(
            data_dir,
            env={
                "HERALD_ADMIN_TOKEN": ADMIN_TOKEN,
                "HERALD_WEBHOOK_SIGNING_SECRET": WEBHOOK_SECRET,
                "HERALD_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
                "HERALD_INBOX_TOKEN_SECRET": INBOX_TOKEN_SECRET,
                "HERALD_TRACKING_SECRET": TRACKING_SECRET,
                "HERALD_UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
                # Retention purges hourly in production; tests see it act within seconds (each round costs an idle
                # mesh CPU, and the suite keeps a dozen meshes up at once).
                "HERALD_RETENTION_CHECK_SECONDS": "5",
                # Several workers' meshes share the test server's 100 connections.
                "HERALD_DATABASE_POOL_SIZE": "2",
                **RETRY_BACKOFF,
                **PROVIDER_ENV,
                **db_env,
                "HERALD_GATEWAY_CORS_ORIGINS": f"{GATEWAY_ORIGIN},{PAGE_ORIGIN}",
                **(env or {}),
            },
            nats_url=nats_url,
            gateway=gateway,
        )
        try:
            await mesh.start()
            herald = Herald(mesh, ADMIN_TOKEN)
            try:
                yield mesh, herald
            finally:
                await herald.close()
        finally:
            await mesh.stop()


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first, the slowest (`slow(minutes=...)`) before the others: `make test` runs the suite on
    several workers (pytest-xdist), which take tests two at a time in this order, so the minutes-long ones run
    beside the rest instead of after them. And the tests that share a module's or a package's set-up go to one
    worker together (an `xdist_group`), or each worker that takes one of them would set it up again."""

    def minutes(item: pytest.Item) -> float:
        slow = item.get_closest_marker("slow")
        return float(slow.kwargs.get("minutes", 1)) if slow else 0.0

    items.sort(key=minutes, reverse=True)
    for item in items:
        if not item.get_closest_marker("xdist_group") and (group := _shared_set_up(item)):
            item.add_marker(pytest.mark.xdist_group(group))


def _shared_set_up(item: pytest.Item) -> str | None:
    """The module or package whose fixture the test shares, with the parameters that make its instance (the
    backend, mostly); None for a test whose set-ups are its own or the whole session's."""
    definitions = item._fixtureinfo.name2fixturedefs  # type: ignore[attr-defined]
    scopes = {name: defs[-1].scope for name, defs in definitions.items() if defs}
    if not {"module", "package", "class"} & set(scopes.values()):
        return None
    params = getattr(item, "callspec", None)
    shared = sorted(
        f"{name}={value}" for name, value in (params.params.items() if params else ()) if scopes.get(name) != "function"
    )
    packages = [defs[-1].baseid for defs in definitions.values() if defs and defs[-1].scope == "package"]
    return ",".join([min(packages, default=item.nodeid.split("::")[0]), *shared])


class SharedMeshes:
    """Each backend's shared mesh, started when a test first asks for it and kept to the end of the session. A
    worker runs tests of both backends in turn; a session fixture parametrized by backend is torn down at each
    turn, and its mesh would be started again each time."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._running: dict[str, tuple[Mesh, Herald]] = {}
        self._stack = AsyncExitStack()

    async def get(self, backend: str) -> tuple[Mesh, Herald]:
        if backend not in self._running:
            started = running_mesh(self._root / f"mesh-{backend}", backend, gateway=True)
            self._running[backend] = await self._stack.enter_async_context(started)
        return self._running[backend]

    async def aclose(self) -> None:
        await self._stack.aclose()


@pytest.fixture(scope="session")
async def shared_meshes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SharedMeshes]:
    meshes = SharedMeshes(tmp_path_factory.mktemp("shared"))
    yield meshes
    await meshes.aclose()


@pytest.fixture(scope="session", params=backends())
async def shared_mesh(request: pytest.FixtureRequest, shared_meshes: SharedMeshes) -> tuple[Mesh, Herald]:
    """One mesh per database backend for the tests that do not stop or reconfigure processes:
    every test using it runs on SQLite, and on PostgreSQL where HERALD_TEST_DATABASE_URL is set."""
    return await shared_meshes.get(request.param)


@pytest.fixture(params=backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend, for a service's store opened in the test's own process."""
    if request.param == "sqlite":
        yield normalize_database_url("", tmp_path, "shared")
    else:
        with fresh_postgres() as url:
            yield url


@pytest.fixture(scope="session")
def herald(shared_mesh: tuple[Mesh, Herald]) -> Herald:
    return shared_mesh[1]


@pytest.fixture(scope="session")
async def sink() -> AsyncIterator[WebhookSink]:
    sink = WebhookSink(WEBHOOK_SECRET)
    await sink.start()
    yield sink
    await sink.stop()


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio(account_sid="AC" + "2" * 32, auth_token=PROVIDER_ENV["HERALD_PROVIDER_TEST_SECRET"])
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def alibaba() -> AsyncIterator[FakeAlibaba]:
    fake = FakeAlibaba(
        access_key_id=PROVIDER_ENV["HERALD_PROVIDER_TEST_KEY_ID"],
        access_key_secret=PROVIDER_ENV["HERALD_PROVIDER_TEST_SECRET"],
        sign_names={"herald"},
        templates={"SMS_CODE": {"code"}},
    )
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def apns(tmp_path: Path) -> AsyncIterator[FakeApns]:
    """An APNs that trusts the test mesh's signing key (APNS_KEY)."""
    public = APNS_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fake = FakeApns(TEAM_ID, KEY_ID, BUNDLE_ID, public.decode(), tmp_path)
    await fake.start()
    yield fake
    await fake.stop()


Run = Callable[..., Result]


@pytest.fixture
def heraldctl(shared_mesh: tuple[Mesh, Herald], monkeypatch: pytest.MonkeyPatch) -> Run:
    """heraldctl as an operator runs it against the shared mesh; `run` asserts the exit code it expects."""
    mesh, _ = shared_mesh
    for service in ("intake", "router", "adapters", "feedback"):
        monkeypatch.setenv(f"HERALD_{service.upper()}_ADDR", mesh.addr(service))
    monkeypatch.setenv("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
    runner = CliRunner()

    def run(*args: str, api_key: str = "", code: int = 0) -> Result:
        result = runner.invoke(cli, list(args), env={"HERALD_API_KEY": api_key, "COLUMNS": "250"})
        assert result.exit_code == code, (args, result.output, result.stderr if result.stderr_bytes else "")
        return result

    return run
