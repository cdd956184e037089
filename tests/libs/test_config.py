"""Configuration comes from the environment; a bad value stops the binary with a message that names it."""

import asyncio
import os
import signal
import subprocess

import pytest
from herald.v1 import common_pb2

from devmesh.mesh import SERVICES, Binary, free_port
from libs import categories
from libs.config import Settings

# Far more than the second or two a binary takes to import and refuse, even ten at once on a busy machine; a
# binary that went on to connect to NATS (none runs here) would not print one line and stop.
EXIT_WITHIN = 60.0
# Each variable with the binaries that use it: every numeric one, and the one list of names.
BAD = [
    *(("HERALD_STREAM_REPLICAS", service, "abc") for service in SERVICES),
    ("HERALD_DEDUP_WINDOW_SECONDS", "router", "abc"),
    ("HERALD_RETENTION_CHECK_SECONDS", "feedback", "abc"),
    *((f"HERALD_RETRY_BACKOFF_{name.upper()}", "adapters", "abc") for name in categories.BY_NAME),
    ("HERALD_PIPELINES", "router", "urgent"),
]


def test_pipelines_default_to_every_category_and_can_be_narrowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HERALD_PIPELINES", raising=False)
    assert Settings.from_env("router").pipelines == categories.KNOWN
    monkeypatch.setenv("HERALD_PIPELINES", " Critical ")
    assert Settings.from_env("router").pipelines == (common_pb2.CATEGORY_CRITICAL,)
    monkeypatch.setenv("HERALD_PIPELINES", "notification,marketing")
    assert Settings.from_env("adapters").pipelines == (common_pb2.CATEGORY_NOTIFICATION, common_pb2.CATEGORY_MARKETING)


def test_numbers_in_range_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_STREAM_REPLICAS", " 3 ")
    monkeypatch.setenv("HERALD_DEDUP_WINDOW_SECONDS", "0")
    monkeypatch.setenv("HERALD_RETENTION_CHECK_SECONDS", "0.5")
    monkeypatch.setenv("HERALD_RETRY_BACKOFF_CRITICAL", "0,1.5,30")
    settings = Settings.from_env("adapters")
    assert settings.stream_replicas == 3
    assert settings.dedup_window_seconds == 0
    assert settings.retention_check_seconds == 0.5
    assert settings.retry_backoff[common_pb2.CATEGORY_CRITICAL] == (0, 1.5, 30)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("HERALD_STREAM_REPLICAS", "0", "a whole number >= 1"),
        ("HERALD_STREAM_REPLICAS", "1.5", "a whole number >= 1"),
        ("HERALD_DEDUP_WINDOW_SECONDS", "-1", "a number of seconds >= 0"),
        ("HERALD_DEDUP_WINDOW_SECONDS", "nan", "a number of seconds >= 0"),
        ("HERALD_RETENTION_CHECK_SECONDS", "inf", "a number of seconds >= 0.1"),
        ("HERALD_RETENTION_CHECK_SECONDS", "0", "a number of seconds >= 0.1"),
        ("HERALD_RETRY_BACKOFF_MARKETING", "1,-5", "a number of seconds >= 0"),
    ],
)
def test_numbers_out_of_range_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"^{variable}: expected {expected}, got '"):
        Settings.from_env("adapters")


@pytest.fixture(scope="module")
async def refusals(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[int | None, str]]:
    """(variable, binary) -> (exit code, everything it printed), from all the binaries in BAD started at once."""
    data = tmp_path_factory.mktemp("bad-config")
    binaries = {
        (variable, service): Binary(
            service,
            f"127.0.0.1:{free_port()}",
            {
                **os.environ,
                "HERALD_DATA_DIR": str(data),
                "HERALD_NATS_URL": f"nats://127.0.0.1:{free_port()}",
                variable: value,
            },
            data / f"{service}-{variable}.log",
        )
        for variable, service, value in BAD
    }
    for binary in binaries.values():
        binary.start()

    async def exit_code(binary: Binary) -> int | None:
        assert binary.proc is not None
        try:
            return await asyncio.to_thread(binary.proc.wait, EXIT_WITHIN)
        except subprocess.TimeoutExpired:
            return await binary.stop(signal.SIGKILL)

    codes = await asyncio.gather(*(exit_code(b) for b in binaries.values()))
    return {
        key: (code, binary.log_path.read_text()) for (key, binary), code in zip(binaries.items(), codes, strict=True)
    }


@pytest.mark.parametrize(("variable", "service", "value"), BAD)
def test_a_bad_value_stops_the_binary_with_one_line_naming_the_variable(
    refusals: dict[tuple[str, str], tuple[int | None, str]], variable: str, service: str, value: str
) -> None:
    code, printed = refusals[variable, service]
    assert code == 1, printed
    [line] = printed.splitlines()
    assert line.startswith(f"herald-{service}: bad configuration: {variable}: "), line
    assert repr(value) in line, "it says what it got"
