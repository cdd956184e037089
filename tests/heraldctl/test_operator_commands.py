"""heraldctl for the whole job: provider accounts, --json on every read command, ids whole at 80 columns, refusals
of a dead-letter replay that would do something else than asked, progress, help, --version."""

import json
import re
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from typer.main import get_command
from typer.testing import CliRunner, Result

from devmesh.mesh import Mesh
from herald.tools.heraldctl.main import cli
from tests.conftest import PROVIDER_ENV, RETRY_BACKOFF, Run
from tests.helpers.client import Herald, all_final
from tests.helpers.webhook_sink import WebhookSink

# The largest sequence heraldctl takes: never a dead letter's in a test's stream.
NO_SUCH_SEQUENCE = str(2**63 - 1)


def _narrow(*args: str, api_key: str = "") -> Result:
    """heraldctl in an 80-column terminal (or a pipe: rich assumes 80 there too)."""
    result = CliRunner().invoke(cli, list(args), env={"HERALD_API_KEY": api_key, "COLUMNS": "80"})
    assert result.exit_code == 0, (args, result.output)
    return result


def _json(result: Result) -> Any:
    """What --json printed: stdout must be one JSON document and nothing else."""
    return json.loads(result.stdout)


def _account_name() -> str:
    # Long on purpose: a table squeezed into 80 columns must still show it whole.
    return f"twilio-ctl-{uuid.uuid4().hex}"


def test_provider_accounts_round_trip(heraldctl: Run) -> None:
    name = _account_name()
    created = heraldctl(
        "providers", "create", name,
        "--provider", "twilio",
        "--endpoint", "http://127.0.0.1:9",
        "--setting", "account_sid=AC" + "1" * 32, "--setting", "from=+15005550006",
        "--credential", "auth_token=HERALD_PROVIDER_TEST_SECRET",
        "--priority", "1", "--weight", "3", "--rate", "50",
        "--unit-price", "0.0079", "--currency", "USD",
        "--disabled",  # takes no traffic: other tests' messages are not routed through it
    ).output  # fmt: skip
    assert name in created and "HERALD_PROVIDER_TEST_SECRET" in created and "0.0079" in created

    listed = _json(heraldctl("providers", "list", "--channel", "sms", "--json"))
    [account] = [a for a in listed["accounts"] if a["name"] == name]
    assert account["provider"] == "twilio" and account["channel"] == "sms" and account["disabled"] is True
    assert account["credentials"] == {"auth_token": "HERALD_PROVIDER_TEST_SECRET"}
    assert account["unit_price_micros"] == "7900" and account["currency_code"] == "USD"
    assert name in heraldctl("providers", "list").output

    heraldctl(
        "providers", "update", name,
        "--weight", "7", "--setting", "from=+15005550007", "--unset-setting", "account_sid",
        "--credential", "key_id=HERALD_PROVIDER_TEST_KEY_ID",
    )  # fmt: skip
    got = _json(heraldctl("providers", "get", name, "--json"))
    assert got["weight"] == 7 and got["priority"] == 1 and got["rate_limit_per_second"] == 50, "only what was given"
    assert got["settings"] == {"from": "+15005550007"}
    assert got["credentials"] == {"auth_token": "HERALD_PROVIDER_TEST_SECRET", "key_id": "HERALD_PROVIDER_TEST_KEY_ID"}
    assert got["disabled"] is True and got["endpoint"] == "http://127.0.0.1:9"

    assert heraldctl("providers", "delete", name).output == f"{name}: deleted\n"
    assert "NOT_FOUND" in heraldctl("providers", "get", name, code=1).output
    assert name not in heraldctl("providers", "list").output


def test_provider_account_refusals(heraldctl: Run) -> None:
    name = _account_name()
    secret = PROVIDER_ENV["HERALD_PROVIDER_TEST_SECRET"]
    for credential in (f"auth_token={secret}", secret):  # the secret itself, by mistake
        refused = heraldctl("providers", "create", name, "--provider", "twilio", "--credential", credential, code=2)
        assert "never the secret" in refused.output or "KEY=VARIABLE" in refused.output, refused.output
        assert secret not in refused.output, "a secret typed by mistake is not echoed"
    assert "nothing to change" in heraldctl("providers", "update", name, code=2).output
    assert "--unit-price 'lots'" in heraldctl("providers", "create", name, "--provider", "twilio",
                                              "--unit-price", "lots", code=2).output  # fmt: skip
    # herald's own refusal (an unknown plug-in) is exit 1 with the field, and nothing was created.
    unknown = heraldctl("providers", "create", name, "--provider", "pigeon", code=1)
    assert "INVALID_ARGUMENT" in unknown.output and "account.provider" in unknown.output
    assert "NOT_FOUND" in heraldctl("providers", "get", name, code=1).output


def test_json_on_every_read_command(heraldctl: Run, tmp_path: Path) -> None:
    app = re.search(r"\b(app_\w+)", heraldctl("apps", "create", f"ctl-{uuid.uuid4().hex[:6]}").output)
    assert app
    app_id = app[1]
    template_id = f"ctl-{uuid.uuid4().hex[:8]}"
    spec = tmp_path / "template.yaml"
    spec.write_text(
        f"template_id: {template_id}\ncategory: notification\ncontents:\n  - {{channel: webhook, body: hi}}\n"
    )
    heraldctl("templates", "apply", str(spec))
    name = _account_name()
    heraldctl("providers", "create", name, "--provider", "twilio", "--disabled")
    try:
        assert app_id in [a["app_id"] for a in _json(heraldctl("apps", "list", "--json"))["apps"]]
        assert _json(heraldctl("apps", "get", app_id, "--json"))["app_id"] == app_id
        assert template_id in [t["template_id"] for t in _json(heraldctl("templates", "list", "--json"))["templates"]]
        template = _json(heraldctl("templates", "get", template_id, "--json"))
        assert template["template_id"] == template_id and template["category"] == "CATEGORY_NOTIFICATION"
        preview = _json(heraldctl("templates", "preview", template_id, "--json"))
        assert preview["contents"][0]["body"] == "hi"
        assert name in [a["name"] for a in _json(heraldctl("providers", "list", "--json"))["accounts"]]
        assert _json(heraldctl("providers", "get", name, "--json"))["name"] == name
        assert "rows" in _json(heraldctl("stats", "--app", app_id, "--json"))
        assert "dead_letters" in _json(heraldctl("dlq", "list", "--json"))
        assert "unprocessed_messages" in _json(heraldctl("dlq", "unprocessed", "--json"))
    finally:
        heraldctl("providers", "delete", name)


def test_ids_are_whole_at_80_columns(heraldctl: Run, tmp_path: Path) -> None:
    created = heraldctl("apps", "create", f"ctl-narrow-{uuid.uuid4().hex}", "--channel", "webhook").output
    app_id = re.findall(r"\b(app_\w+)", created)[0]
    key = re.findall(r"(hk_[\w-]+)", created)[0]
    assert app_id in _narrow("apps", "get", app_id).stdout
    assert app_id in _narrow("apps", "list").stdout
    template_id = f"ctl-{uuid.uuid4().hex}"
    spec = tmp_path / "template.yaml"
    spec.write_text(
        f"template_id: {template_id}\ncategory: notification\ncontents:\n  - {{channel: webhook, body: hi}}\n"
    )
    heraldctl("templates", "apply", str(spec))
    assert template_id in _narrow("templates", "list").stdout

    message_id = heraldctl("send", template_id, "--user", "nobody", api_key=key).output.strip()
    deadline = time.monotonic() + 20
    while True:  # status is recorded asynchronously: NOT_FOUND (exit 1) for a moment is expected
        status = CliRunner().invoke(cli, ["status", message_id], env={"HERALD_API_KEY": key, "COLUMNS": "80"})
        if status.exit_code == 0 and "1 delivery" in status.stdout:
            break
        assert time.monotonic() < deadline, status.output
        time.sleep(0.2)
    assert status.stdout.startswith(f"{message_id}  template {template_id} v1"), status.stdout
    assert re.search(rf"│ {re.escape(message_id)}\.\w+ +│ nobody +│", status.stdout), status.stdout

    name = _account_name()
    heraldctl("providers", "create", name, "--provider", "twilio", "--disabled")
    try:
        assert name in _narrow("providers", "list").stdout
    finally:
        heraldctl("providers", "delete", name)


def test_dlq_replay_refuses_to_guess(heraldctl: Run) -> None:
    no_target = heraldctl("dlq", "replay", code=2)
    assert "say which dead letters to replay" in no_target.stderr and no_target.stdout == ""
    unknown = heraldctl("dlq", "replay", NO_SUCH_SEQUENCE, code=2)
    assert f"no dead letter {NO_SUCH_SEQUENCE} is waiting" in " ".join(unknown.stderr.split())
    assert "nothing was replayed" in " ".join(unknown.stderr.split()) and unknown.stdout == ""
    assert heraldctl("dlq", "replay", "0", code=2).exit_code == 2
    assert "not both" in heraldctl("dlq", "replay", "7", "--all", code=2).stderr


async def test_dlq_replay_of_a_channel_shows_progress(
    heraldctl: Run, shared_mesh: tuple[Mesh, Herald], sink: WebhookSink
) -> None:
    _, herald = shared_mesh
    attempts = len(RETRY_BACKOFF["HERALD_RETRY_BACKOFF_NOTIFICATION"].split(",")) + 1
    paths = [f"/ctl-progress/{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for path in paths:
        sink.answer(path, *[500] * attempts)
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    recipients = [msg.Recipient(user_id=f"dead-{n}", addresses={"webhook": sink.url(p)}) for n, p in enumerate(paths)]
    message_id = await herald.send(app, msg.SendRequest(template_id=template, recipients=recipients))
    failed = await herald.wait_message(app, message_id, lambda m: all_final(m, 2))
    delivery_ids = {d.delivery_id for d in failed.deliveries}
    assert all(d.state == common_pb2.DELIVERY_STATE_FAILED for d in failed.deliveries)

    listed = _json(heraldctl("dlq", "list", "--channel", "webhook", "--limit", "1000", "--json"))["dead_letters"]
    mine = {d["delivery_id"]: d["sequence"] for d in listed if d["delivery_id"] in delivery_ids}
    assert set(mine) == delivery_ids
    narrow = _narrow("dlq", "list", "--channel", "webhook", "--limit", "1000").stdout
    assert all(delivery_id in narrow for delivery_id in delivery_ids), narrow
    # A waiting dead letter of another channel than the one asked for is not replayed, nor anything else.
    sequence = next(iter(mine.values()))
    wrong = heraldctl("dlq", "replay", sequence, "--channel", "sms", code=2)
    assert f"no dead letter {sequence} on channel sms is waiting" in " ".join(wrong.stderr.split())

    replay = heraldctl("dlq", "replay", "--channel", "webhook", "--category", "notification", "--batch-size", "1")
    total = int(replay.stdout.removeprefix("replayed "))
    assert total >= 2 and replay.stdout == f"replayed {total}\n"
    assert replay.stderr.splitlines() == [f"replayed {n:,} of {total:,}" for n in range(1, total + 1)]
    sent = await herald.wait_message(
        app, message_id, lambda m: all(d.state == common_pb2.DELIVERY_STATE_SENT for d in m.deliveries)
    )
    assert {d.attempts for d in sent.deliveries} == {attempts + 1}


def test_version_and_help(heraldctl: Run) -> None:
    assert heraldctl("--version").output == f"heraldctl {version('herald')}\n"
    undocumented = []
    stack = [("heraldctl", get_command(cli))]
    while stack:
        path, command = stack.pop()
        if not (command.help or "").strip():
            undocumented.append(path)
        undocumented += [f"{path} {p.name}" for p in command.params if not (getattr(p, "help", "") or "").strip()]
        stack += [(f"{path} {name}", sub) for name, sub in getattr(command, "commands", {}).items()]
    assert undocumented == []
    usage = " ".join(heraldctl("--help").output.split())
    for option, variable, default in (
        ("--intake", "HERALD_INTAKE_ADDR", "127.0.0.1:50051"),
        ("--adapters", "HERALD_ADAPTERS_ADDR", "127.0.0.1:50053"),
        ("--feedback", "HERALD_FEEDBACK_ADDR", "127.0.0.1:50054"),
    ):
        assert re.search(rf"{option} .*?\[env var: {variable}\] \[default: {default}\]", usage), usage
    assert "HERALD_ADMIN_TOKEN" in usage and "HERALD_API_KEY" in usage
