"""What installs: the server's wheel carries everything a pod needs (migrations, entry points) under the one name
`herald`, and the client package (clients/python: the API's stubs, their .pyi files and PEP 561 marker, and the
helper) installs alone, with the oldest protobuf it admits."""

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "python"
# The wheels `make install` downloads for installing the client offline: its dependencies, and protobuf at the
# lowest version the client declares.
WHEELHOUSE = Path(sys.executable).parent.parent / "wheelhouse"


@pytest.fixture
def clean_tree() -> Iterator[None]:
    """setuptools builds inside the source tree; leave it as the test found it."""
    leftovers = [ROOT / "build", ROOT / "herald.egg-info", CLIENT / "build", CLIENT / "herald_client.egg-info"]
    existed = {p for p in leftovers if p.exists()}
    yield
    for path in leftovers:
        if path not in existed:
            shutil.rmtree(path, ignore_errors=True)


def _wheel(source: Path, into: Path) -> Path:
    run = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(into)]
    subprocess.run([*run, str(source)], check=True, cwd=into)
    [wheel] = into.glob("herald*.whl")
    return wheel


def _venv(where: Path) -> tuple[Path, Path]:
    """A clean venv: its python and its site-packages."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return python, Path(site)


def _top_level(site: Path) -> set[str]:
    return {p.name for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth")) and p.name != "__pycache__"}


@pytest.mark.usefixtures("clean_tree")
def test_the_server_installs_under_the_one_name_herald_with_migrations_and_console_scripts(tmp_path: Path) -> None:
    wheel = _wheel(ROOT, tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    for service in ("intake", "router", "adapters", "feedback"):
        assert f"herald/services/{service}/migrations/env.py" in names
        assert f"herald/services/{service}/migrations/versions/0001_initial.py" in names
        assert f"herald-{service} = herald.services.{service}.main:main" in entry_points
    assert "[herald.providers]" in entry_points
    assert "webhook = herald.services.adapters.channels.webhook:Webhook" in entry_points
    assert "herald/internal/v1/work_pb2.py" in names
    assert not any(n.startswith("herald/v1/") for n in names), "the API's stubs come with herald-client"

    python, site = _venv(tmp_path / "venv")
    before = _top_level(site)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True)
    assert _top_level(site) - before == {"herald"}, "no top-level services, libs, tools or devmesh"


@pytest.mark.usefixtures("clean_tree")
def test_the_client_installs_alone_and_its_stubs_import_with_the_oldest_protobuf_it_admits(tmp_path: Path) -> None:
    wheel = _wheel(CLIENT, tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    # Other teams type-check against the stubs; mypy reads an installed package's .pyi only with the marker.
    assert {"herald/v1/py.typed", "herald/v1/message_service_pb2_grpc.pyi", "herald/client/py.typed"} <= names
    lowest = next(
        line.split(">=")[1].split(",")[0]
        for line in (CLIENT / "pyproject.toml").read_text().splitlines()
        if line.strip().startswith('"protobuf>=')
    )

    python, site = _venv(tmp_path / "venv")
    install = [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(WHEELHOUSE)]
    subprocess.run([*install, str(wheel), f"protobuf=={lowest}"], check=True)
    stubs = "herald.v1.message_service_pb2_grpc"
    script = f"import google.protobuf, herald.client, {stubs}; print(google.protobuf.__version__)"
    imported = subprocess.run(
        [str(python), "-c", script],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert imported.stdout.strip() == lowest
    assert "herald" in _top_level(site)
    assert not {"services", "libs", "tools"} & _top_level(site)
