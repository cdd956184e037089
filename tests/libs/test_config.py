"""Configuration comes from the environment; a bad value stops the binary with a message that names it."""

import os
import subprocess
import sys

import pytest
from herald.v1 import common_pb2

from libs import categories
from libs.config import Settings


def test_pipelines_default_to_every_category_and_can_be_narrowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HERALD_PIPELINES", raising=False)
    assert Settings.from_env("router").pipelines == categories.KNOWN
    monkeypatch.setenv("HERALD_PIPELINES", " Critical ")
    assert Settings.from_env("router").pipelines == (common_pb2.CATEGORY_CRITICAL,)
    monkeypatch.setenv("HERALD_PIPELINES", "notification,marketing")
    assert Settings.from_env("adapters").pipelines == (common_pb2.CATEGORY_NOTIFICATION, common_pb2.CATEGORY_MARKETING)


def test_an_unknown_pipeline_stops_the_binary_with_a_clear_message(tmp_path: os.PathLike[str]) -> None:
    env = {**os.environ, "HERALD_PIPELINES": "urgent", "HERALD_DATA_DIR": str(tmp_path)}
    script = "from services.router.main import main; main()"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "herald-router: bad configuration: HERALD_PIPELINES: unknown categories ['urgent']" in done.stderr
    assert "Traceback" not in done.stderr
