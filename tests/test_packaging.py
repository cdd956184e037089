"""The wheel the Dockerfile installs carries everything a pod needs: stubs, migrations, entry points; and what
other teams type-check against: the stubs' .pyi files and the PEP 561 marker."""

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clean_tree() -> Iterator[None]:
    """setuptools builds inside the source tree; leave it as the test found it."""
    leftovers = [ROOT / "build", ROOT / "herald.egg-info"]
    existed = {p for p in leftovers if p.exists()}
    yield
    for path in leftovers:
        if path not in existed:
            shutil.rmtree(path, ignore_errors=True)


@pytest.mark.usefixtures("clean_tree")
def test_wheel_ships_stubs_migrations_and_console_scripts(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
    )
    [wheel] = tmp_path.glob("herald-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    for service in ("intake", "router", "adapters", "feedback"):
        assert f"services/{service}/migrations/env.py" in names
        assert f"services/{service}/migrations/versions/0001_initial.py" in names
        assert f"herald-{service} = services.{service}.main:main" in entry_points
    assert "herald/v1/message_service_pb2_grpc.py" in names
    # Other teams type-check against the stubs; mypy reads an installed package's .pyi only with this marker.
    assert {"herald/py.typed", "herald/v1/message_service_pb2_grpc.pyi"} <= names
    assert "[herald.providers]" in entry_points
    assert "webhook = services.adapters.channels.webhook:Webhook" in entry_points
    assert not any(n.startswith(("tests/", "devmesh/")) for n in names), "the dev mesh is not shipped"
