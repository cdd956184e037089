"""Configuration comes from the environment; a bad value stops the binary with a message that names it."""

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from herald.v1 import common_pb2

from devmesh.mesh import SERVICES, Binary, free_port
from herald.libs import categories
from herald.libs.config import Settings
from herald.services.adapters.settings import AdaptersSettings
from herald.services.feedback.settings import FeedbackSettings
from herald.services.intake.settings import IntakeSettings
from herald.services.router.settings import RouterSettings

# Far more than the second or two a binary takes to import and refuse alone: a wave of them beside the suite's
# meshes on a slow two-core host took a minute (two were killed just after printing their line). A binary that
# went on to connect to NATS (none runs here) would not print one line and stop, however long it had.
EXIT_WITHIN = 180.0
# Each variable with the binaries that use it: every numeric one, the one list of names, and the required secret.
BAD = [
    *(("HERALD_STREAM_REPLICAS", service, "abc") for service in SERVICES),
    ("HERALD_DEDUP_WINDOW_SECONDS", "router", "abc"),
    ("HERALD_RETENTION_CHECK_SECONDS", "feedback", "abc"),
    ("HERALD_RETENTION_CHECK_SECONDS", "intake", "abc"),
    ("HERALD_MARKETING_BACKLOG_LIMIT", "intake", "abc"),
    *((f"HERALD_RETRY_BACKOFF_{name.upper()}", "adapters", "abc") for name in categories.BY_NAME),
    ("HERALD_TRACKING_TTL_DAYS", "adapters", "abc"),
    ("HERALD_PIPELINES", "router", "urgent"),
    ("HERALD_PIPELINES", "adapters", "urgent"),
    ("HERALD_WEBHOOK_SIGNING_SECRET", "adapters", ""),
]
# Each binary's own settings, as its main.py hands them to runtime.run.
OWN: dict[str, Callable[[Mapping[str, str]], object]] = {
    "intake": IntakeSettings.from_env,
    "router": RouterSettings.from_env,
    "adapters": AdaptersSettings.from_env,
    "feedback": FeedbackSettings.from_env,
}
ADAPTERS_SECRETS = {
    "HERALD_WEBHOOK_SIGNING_SECRET": "webhook-signing-secret-value",
    "HERALD_INBOX_TOKEN_SECRET": "inbox-token-secret-value",
    "HERALD_TRACKING_SECRET": "tracking-secret-value",
    "HERALD_UNSUBSCRIBE_SECRET": "unsubscribe-secret-value",
}


def _configure(service: str, env: Mapping[str, str]) -> tuple[Settings, object]:
    """What runtime.run reads for `service` before it connects: the shared settings and the binary's own."""
    return Settings.from_env(service, env), OWN[service](env)


def test_pipelines_default_to_every_category_and_can_be_narrowed() -> None:
    assert RouterSettings.from_env({}).pipelines == categories.KNOWN
    assert RouterSettings.from_env({"HERALD_PIPELINES": " Critical "}).pipelines == (common_pb2.CATEGORY_CRITICAL,)
    adapters = AdaptersSettings.from_env({**ADAPTERS_SECRETS, "HERALD_PIPELINES": "notification,marketing"})
    assert adapters.pipelines == (common_pb2.CATEGORY_NOTIFICATION, common_pb2.CATEGORY_MARKETING)


def test_numbers_in_range_are_taken(tmp_path: Path) -> None:
    env = {
        **ADAPTERS_SECRETS,
        "HERALD_DATA_DIR": str(tmp_path),
        "HERALD_STREAM_REPLICAS": " 3 ",
        "HERALD_DEDUP_WINDOW_SECONDS": "0",
        "HERALD_RETENTION_CHECK_SECONDS": "0.5",
        "HERALD_RETRY_BACKOFF_CRITICAL": "0,1.5,30",
    }
    assert Settings.from_env("adapters", env).stream_replicas == 3
    assert RouterSettings.from_env(env).dedup_window_seconds == 0
    assert FeedbackSettings.from_env(env).retention_check_seconds == 0.5
    assert IntakeSettings.from_env(env).retention_check_seconds == 0.5
    assert AdaptersSettings.from_env(env).retry_backoff[common_pb2.CATEGORY_CRITICAL] == (0, 1.5, 30)


@pytest.mark.parametrize(
    ("variable", "value", "expected", "service"),
    [
        ("HERALD_STREAM_REPLICAS", "0", "a whole number >= 1", "adapters"),
        ("HERALD_STREAM_REPLICAS", "1.5", "a whole number >= 1", "intake"),
        ("HERALD_DEDUP_WINDOW_SECONDS", "-1", "a number of seconds >= 0", "router"),
        ("HERALD_DEDUP_WINDOW_SECONDS", "nan", "a number of seconds >= 0", "router"),
        ("HERALD_RETENTION_CHECK_SECONDS", "inf", "a number of seconds >= 0.1", "feedback"),
        ("HERALD_RETENTION_CHECK_SECONDS", "0", "a number of seconds >= 0.1", "intake"),
        ("HERALD_RETRY_BACKOFF_MARKETING", "1,-5", "a number of seconds >= 0", "adapters"),
        ("HERALD_TRACKING_TTL_DAYS", "0", "a whole number >= 1", "adapters"),
        ("HERALD_MARKETING_BACKLOG_LIMIT", "-1", "a whole number >= 0", "intake"),
    ],
)
def test_numbers_out_of_range_are_refused(
    tmp_path: Path, variable: str, value: str, expected: str, service: str
) -> None:
    env = {**ADAPTERS_SECRETS, "HERALD_DATA_DIR": str(tmp_path), variable: value}
    with pytest.raises(ValueError, match=f"^{variable}: expected {expected}, got '"):
        _configure(service, env)


def test_webhooks_cannot_go_out_unsigned(tmp_path: Path) -> None:
    env = {**ADAPTERS_SECRETS, "HERALD_DATA_DIR": str(tmp_path), "HERALD_WEBHOOK_SIGNING_SECRET": ""}
    unsigned = r"^HERALD_WEBHOOK_SIGNING_SECRET: expected a secret to sign webhooks with, got ''$"
    with pytest.raises(ValueError, match=unsigned):
        _configure("adapters", env)


@pytest.mark.parametrize("service", ["intake", "router", "feedback"])
def test_only_the_adapters_read_the_adapters_settings(tmp_path: Path, service: str) -> None:
    """The other binaries neither hold the adapters' secrets nor stop on the adapters' settings: none is missing
    or malformed for them."""
    env = {"HERALD_DATA_DIR": str(tmp_path), "HERALD_TRACKING_TTL_DAYS": "abc", "HERALD_RETRY_BACKOFF_CRITICAL": "-1"}
    _configure(service, env)
    held = repr(_configure(service, {**env, **ADAPTERS_SECRETS}))
    assert not [secret for secret in ADAPTERS_SECRETS.values() if secret in held]


# Binaries started at once: each imports all of herald before it reads its settings, and on a busy machine a wave
# of them must not starve its own members past EXIT_WITHIN.
WAVE = 4


async def test_a_bad_value_stops_the_binary_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    """Every binary in BAD, started with its bad value (a few at a time), exits 1 having printed one line that
    names the variable and the value it got."""
    wrong = {}
    for first in range(0, len(BAD), WAVE):
        wave = BAD[first : first + WAVE]
        binaries = [_bad_binary(tmp_path, variable, service, value) for variable, service, value in wave]
        for binary in binaries:
            binary.start()
        codes = await asyncio.gather(*(_exit_code(b) for b in binaries))
        for (variable, service, value), binary, code in zip(wave, binaries, codes, strict=True):
            printed = binary.log_path.read_text()
            lines = printed.splitlines()
            if (
                code != 1
                or len(lines) != 1
                or not lines[0].startswith(f"herald-{service}: bad configuration: {variable}: ")
                or repr(value) not in lines[0]
            ):
                wrong[variable, service] = (code, printed)
    assert not wrong


def _bad_binary(data: Path, variable: str, service: str, value: str) -> Binary:
    return Binary(
        service,
        f"127.0.0.1:{free_port()}",
        {
            **os.environ,
            "HERALD_DATA_DIR": str(data),
            "HERALD_NATS_URL": f"nats://127.0.0.1:{free_port()}",
            # The adapters need one; each case may take it away.
            "HERALD_WEBHOOK_SIGNING_SECRET": "a-secret",
            variable: value,
        },
        data / f"{service}-{variable}.log",
    )


async def _exit_code(binary: Binary) -> int | None:
    assert binary.proc is not None
    try:
        return await asyncio.to_thread(binary.proc.wait, EXIT_WITHIN)
    except subprocess.TimeoutExpired:
        return await binary.stop(signal.SIGKILL)
