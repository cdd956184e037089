"""heraldctl against a running mesh: what an operator types, what they read, and the exit codes."""

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from typer.testing import CliRunner

from devmesh.mesh import Mesh, free_port
from herald.tools.heraldctl.main import cli
from tests.conftest import RETRY_BACKOFF, Run
from tests.helpers.client import Herald, all_final
from tests.helpers.webhook_sink import WebhookSink


def _app_key(heraldctl: Run) -> str:
    result = heraldctl("apps", "create", f"ctl-{uuid.uuid4().hex[:6]}", "--channel", "webhook", "--rate", "50")
    match = re.search(r"(hk_[A-Za-z0-9_-]+)", result.output)
    assert match, result.output
    return match.group(1)


def _apply(heraldctl: Run, tmp_path: Path, template_id: str, body: str) -> str:
    spec = tmp_path / "templates.yaml"
    spec.write_text(
        f"template_id: {template_id}\ncategory: notification\ncontents:\n  - channel: webhook\n    body: '{body}'\n"
    )
    return heraldctl("templates", "apply", str(spec)).output


def test_apply_creates_then_updates_only_on_change(heraldctl: Run, tmp_path: Path) -> None:
    template_id = f"ctl-{uuid.uuid4().hex[:6]}"
    assert "created version 1" in _apply(heraldctl, tmp_path, template_id, "{{ n }}")
    assert "unchanged (version 1)" in _apply(heraldctl, tmp_path, template_id, "{{ n }}")
    assert "updated to version 2" in _apply(heraldctl, tmp_path, template_id, "v2 {{ n }}")
    assert template_id in heraldctl("templates", "list").output
    preview = heraldctl("templates", "preview", template_id, "--var", "n=42").output
    assert "v2 42" in preview
    assert "template_id: " + template_id in heraldctl("templates", "get", template_id, "--version", "1").output


def test_send_status_and_cancel(heraldctl: Run, tmp_path: Path) -> None:
    key = _app_key(heraldctl)
    template_id = f"ctl-{uuid.uuid4().hex[:6]}"
    _apply(heraldctl, tmp_path, template_id, "hi")
    sent = heraldctl("send", template_id, "--user", "nobody-at-all", api_key=key).output.strip()
    assert sent.startswith("msg_")
    deadline = time.monotonic() + 20
    while True:  # status is recorded asynchronously: NOT_FOUND (exit 1) for a moment is expected
        polled = CliRunner().invoke(cli, ["status", sent, "--json"], env={"HERALD_API_KEY": key})
        if polled.exit_code == 0:
            deliveries = json.loads(polled.output).get("deliveries", [])
            if deliveries and deliveries[0]["state"] == "DELIVERY_STATE_SUPPRESSED":
                break
        assert time.monotonic() < deadline, polled.output
        time.sleep(0.2)
    table = heraldctl("status", sent, "--history", api_key=key).output
    assert "SUPPRESSED" in table and "no webhook address" in table

    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = heraldctl("send", template_id, "--user", "nobody", "--send-at", in_an_hour, api_key=key)
    scheduled = later.output.strip()
    assert f"{scheduled}: cancelled" in heraldctl("cancel", scheduled, api_key=key).output
    refused = heraldctl("cancel", sent, api_key=key, code=1)
    assert "FAILED_PRECONDITION" in refused.output


def test_refusals_and_misuse_have_distinct_exit_codes(heraldctl: Run, tmp_path: Path) -> None:
    key = _app_key(heraldctl)
    template_id = f"ctl-{uuid.uuid4().hex[:6]}"
    _apply(heraldctl, tmp_path, template_id, "{{ code }}")
    missing = heraldctl("send", template_id, "--to", "webhook=https://x.example/", api_key=key, code=1)
    assert "INVALID_ARGUMENT" in missing.output and "variables" in missing.output
    assert "no API key" in heraldctl("send", template_id, code=2).output
    assert "KEY=VALUE" in heraldctl("send", template_id, "--var", "oops", api_key=key, code=2).output
    unreachable = heraldctl("--intake", f"127.0.0.1:{free_port()}", "apps", "list", code=3)
    assert "unreachable" in unreachable.output


async def test_dlq_list_and_replay(heraldctl: Run, shared_mesh: tuple[Mesh, Herald], sink: WebhookSink) -> None:
    _, herald = shared_mesh
    path = f"/ctl-dead/{uuid.uuid4().hex[:8]}"
    attempts = len(RETRY_BACKOFF["HERALD_RETRY_BACKOFF_NOTIFICATION"].split(",")) + 1
    sink.answer(path, *[500] * attempts)
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    recipient = msg.Recipient(addresses={"webhook": sink.url(path)})
    message_id = await herald.send(app, msg.SendRequest(template_id=template, recipients=[recipient]))
    [delivery] = (await herald.wait_message(app, message_id, all_final)).deliveries
    assert delivery.state == common_pb2.DELIVERY_STATE_FAILED

    listed = heraldctl("dlq", "list", "--channel", "webhook", "--category", "notification").output
    [row] = [line for line in listed.splitlines() if delivery.delivery_id in line]
    sequence = re.match(r"\W*(\d+)", row)
    assert sequence, row
    assert "gave up after" in row
    assert heraldctl("dlq", "replay", sequence[1]).output.strip() == "replayed 1"
    sent = await herald.wait_message(app, message_id, lambda m: m.deliveries[0].state == common_pb2.DELIVERY_STATE_SENT)
    assert sent.deliveries[0].attempts == attempts + 1
    assert heraldctl("dlq", "list", "--category", "pigeon", code=2).exit_code == 2


def test_stats_and_export_for_the_business_side(heraldctl: Run, tmp_path: Path) -> None:
    key = _app_key(heraldctl)
    template_id = f"ctl-{uuid.uuid4().hex[:6]}"
    _apply(heraldctl, tmp_path, template_id, "hi")
    sent = [heraldctl("send", template_id, "--user", f"nobody-{n}", api_key=key).output.strip() for n in range(2)]
    deadline = time.monotonic() + 20
    while "no_address 2" not in (table := heraldctl("stats", "--by", "template", api_key=key).output):
        assert time.monotonic() < deadline, table
        time.sleep(0.2)
    assert template_id in table

    export = heraldctl("export", api_key=key)
    exported = export.stdout.splitlines()  # the file alone: progress goes to stderr
    assert exported[0].startswith("event_id,occur_time,app_id,message_id")
    assert {line.split(",")[3] for line in exported[1:]} == set(sent)
    assert export.stderr.splitlines()[-1] == f"wrote {len(exported) - 1:,} rows"
    parquet = tmp_path / "events.parquet"
    written = heraldctl("export", "--format", "parquet", "--out", str(parquet), api_key=key)
    assert parquet.read_bytes()[:4] == b"PAR1"
    assert written.stdout == ""
    assert f"wrote {parquet.stat().st_size:,} bytes to {parquet}" in " ".join(written.stderr.split())
    assert "give --out FILE" in heraldctl("export", "--format", "parquet", api_key=key, code=2).output
    assert "--by 'colour'" in heraldctl("stats", "--by", "colour", code=2).output
    app_id = exported[1].split(",")[2]
    assert "30 days" in heraldctl("apps", "set-retention", app_id, "30").output


async def test_status_shows_the_counts_and_pages_through_the_deliveries(
    heraldctl: Run, shared_mesh: tuple[Mesh, Herald], sink: WebhookSink
) -> None:
    _, herald = shared_mesh
    _, app = await herald.create_app()
    key = app[0][1].removeprefix("Bearer ")
    template = await herald.create_template({"webhook": "{}"})
    path = f"/ctl-pages/{uuid.uuid4().hex[:8]}"
    recipients = [msg.Recipient(user_id=f"reader-{n}", addresses={"webhook": sink.url(path)}) for n in range(3)]
    message_id = await herald.send(app, msg.SendRequest(template_id=template, recipients=recipients))
    await herald.wait_message(app, message_id, lambda m: all_final(m, 3))

    first = heraldctl("status", message_id, "--page-size", "2", api_key=key).output
    assert "3 deliveries: sent 3" in first
    readers = {f"reader-{n}" for n in range(3)}
    on_first = readers & set(first.split())
    assert len(on_first) == 2, first
    token = re.search(r"--page-token (\S+)", first)
    assert token, first
    rest = heraldctl("status", message_id, "--page-size", "2", "--page-token", token[1], api_key=key).output
    assert readers & set(rest.split()) == readers - on_first and "--page-token" not in rest
    every = heraldctl("status", message_id, "--page-size", "2", "--all", api_key=key).output
    assert all(f"reader-{n}" in every for n in range(3))
    one = heraldctl("status", message_id, "--user", "reader-1", api_key=key).output
    assert "reader-1" in one and "reader-0" not in one and "3 deliveries" in one
    none_failed = heraldctl("status", message_id, "--state", "failed", api_key=key).output
    assert "reader-" not in none_failed and "3 deliveries: sent 3" in none_failed
    assert "--state 'lost'" in heraldctl("status", message_id, "--state", "lost", api_key=key, code=2).output
