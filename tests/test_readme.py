"""The README's examples, taken from README.md itself and run against a real mesh as a reader would run them, so
they cannot drift from what herald does: the Python sample, the error text it quotes, every heraldctl line."""

import asyncio
import inspect
import json
import re
import shlex
import sys
import uuid
from asyncio.subprocess import PIPE
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import yaml
from herald.v1 import common_pb2, dead_letter_service_pb2, status_service_pb2
from herald.v1 import message_service_pb2 as msg

from devmesh.mesh import Mesh
from herald.libs.auth import CACHE_SECONDS
from herald.tools.heraldctl import main as heraldctl_main
from tests.conftest import ADMIN_TOKEN, RETRY_BACKOFF, Run
from tests.helpers.client import Herald, Metadata, all_final, bad_fields, bearer, rpc_error
from tests.helpers.webhook_sink import WebhookSink

README = Path(__file__).resolve().parent.parent / "README.md"
# The sample's template and the variable it needs; the README's heraldctl `send` line uses them too.
TEMPLATE, VARIABLE = "order-shipped", "order"
Sample = tuple[str, str]


def section(title: str) -> str:
    """The README's text under `## title`, up to the next heading of that level."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def code_block(title: str, language: str) -> str:
    [block] = re.findall(rf"```{language}\n(.*?)```", section(title), re.DOTALL)
    return str(block)


def replaced(text: str, old: str, new: str) -> str:
    """A substitution that matches nothing would silently test something else than the README shows."""
    assert old in text, f"the README no longer has {old!r}"
    return text.replace(old, new)


@pytest.fixture(scope="module")
async def python_sample(
    shared_mesh: tuple[Mesh, Herald], sink: WebhookSink, tmp_path_factory: pytest.TempPathFactory
) -> Sample:
    """The README's Python sample, run once per mesh (it creates the app "checkout" and the template
    "order-shipped", which the heraldctl lines use too) by a Python of its own, since it is blocking code, in a
    folder holding the admin token where `make up` writes it. Returns what it printed and the webhook path."""
    mesh, _ = shared_mesh
    path = f"/readme/{uuid.uuid4().hex[:8]}"
    code = replaced(code_block("Sending a message", "python"), '"127.0.0.1:50051"', f'"{mesh.addr("intake")}"')
    code = replaced(code, '"127.0.0.1:50054"', f'"{mesh.addr("feedback")}"')
    code = replaced(code, '"https://hooks.example.com/herald"', f'"{sink.url(path)}"')
    assert 'open(".herald/admin-token")' in code
    folder = tmp_path_factory.mktemp("readme")
    (folder / ".herald").mkdir()
    (folder / ".herald" / "admin-token").write_text(ADMIN_TOKEN + "\n")
    sample = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=folder, stdout=PIPE, stderr=PIPE)
    printed, errors = await asyncio.wait_for(sample.communicate(), 60)
    assert sample.returncode == 0, errors.decode()
    return printed.decode(), path


async def test_python_sample_sends_and_prints_the_message(python_sample: Sample, sink: WebhookSink) -> None:
    printed, path = python_sample
    message_id = re.search(r'^message_id: "(msg_\w+)"$', printed, re.MULTILINE)
    assert message_id, printed
    assert f'template_id: "{TEMPLATE}"' in printed
    [request] = await sink.wait_for(path)
    assert request.headers["Idempotency-Key"].startswith(f"{message_id[1]}.")
    assert json.loads(request.body) == {"text": "Order A-17 shipped"}


async def test_the_curl_quick_start_sends_over_http_and_reads_the_status(
    shared_mesh: tuple[Mesh, Herald], sink: WebhookSink, tmp_path: Path
) -> None:
    """The README's curl lines, run by bash as they stand (in a folder holding the admin token where `make up`
    writes it), against the mesh's herald-gateway: all JSON, no stub, no herald code on the caller's side."""
    mesh, _ = shared_mesh
    path = f"/readme-http/{uuid.uuid4().hex[:8]}"
    script = replaced(
        code_block("Over HTTP, with curl", "sh"), "GATEWAY=http://127.0.0.1:8080", f"GATEWAY={mesh.gateway_url}"
    )
    script = replaced(script, "https://hooks.example.com/herald", sink.url(path))
    (tmp_path / ".herald").mkdir()
    (tmp_path / ".herald" / "admin-token").write_text(ADMIN_TOKEN + "\n")
    run = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", script, cwd=tmp_path, stdout=PIPE, stderr=PIPE
    )
    printed, errors = await asyncio.wait_for(run.communicate(), 90)
    assert run.returncode == 0, (printed.decode(), errors.decode())
    # What curl printed: the template CreateTemplate made, then GetMessage's answer.
    decoder, answers, at = json.JSONDecoder(), [], 0
    text = printed.decode().strip()
    while at < len(text):
        answer, at = decoder.raw_decode(text, at)
        answers.append(answer)
        at += len(text[at:]) - len(text[at:].lstrip())
    template, message = answers
    assert (template["templateId"], template["version"]) == ("welcome", 1)
    assert message["messageId"].startswith("msg_")
    assert message["templateId"] == "welcome"
    [request] = await sink.wait_for(path)
    assert json.loads(request.body) == {"text": "Welcome, Ada"}
    assert request.headers["Idempotency-Key"].startswith(f"{message['messageId']}.")


async def test_the_quoted_error_is_what_intake_answers(python_sample: Sample, herald: Herald) -> None:
    [errors] = [p for p in section("Sending a message").split("\n\n") if p.startswith("Errors are precise")]
    quoted = re.search(r'`variables`:\s*"([^"]+)"', errors)
    assert quoted, errors
    _, app = await herald.create_app()
    no_variables = msg.SendRequest(template_id=TEMPLATE, recipients=[msg.Recipient(user_id="u1")])
    refused = await rpc_error(herald.messages.Send(no_variables, metadata=app))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(refused)["variables"] == " ".join(quoted[1].split())


def heraldctl_lines() -> list[tuple[bool, list[str]]]:
    """Every command of the README's heraldctl block as (whether it runs with HERALD_API_KEY, its arguments):
    comments dropped, `apps list | get APP_ID` split into commands of the group, `...` dropped, and each
    `[--optional flag]` tried without and alone."""
    commands = []
    for line in code_block("heraldctl", "sh").splitlines():
        if not (line := line.partition(" #")[0].strip()):
            continue
        env, heraldctl, rest = line.partition("heraldctl ")
        assert heraldctl and {w.partition("=")[0] for w in shlex.split(env)} <= {"HERALD_API_KEY"}, line
        alternatives = rest.split(" | ")
        group = alternatives[0].split()[0]
        for i, alternative in enumerate(alternatives):
            command = alternative if i == 0 else f"{group} {alternative}"
            required = re.sub(r"\s*\[[^]]*\]", "", command)
            for optional in ["", *re.findall(r"\[([^]]*)\]", command)]:
                argv = [word for word in shlex.split(f"{required} {optional}") if word != "..."]
                commands.append(("HERALD_API_KEY" in env, argv))
    return commands


def test_readme_names_exactly_the_endpoint_options_heraldctl_has() -> None:
    [paragraph] = [p for p in section("heraldctl").split("\n\n") if p.startswith("Endpoints:")]
    options = {f"--{name}" for name in inspect.signature(heraldctl_main.endpoints).parameters}
    assert set(re.findall(r"`(--[a-z-]+)`", paragraph)) == options
    assert set(re.findall(r"`(HERALD_\w+_ADDR)`", paragraph)) == {f"HERALD_{o[2:].upper()}_ADDR" for o in options}


async def test_every_heraldctl_line_of_the_readme_works(
    heraldctl: Run,
    python_sample: Sample,
    herald: Herald,
    sink: WebhookSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # where `templates.yaml` is and `events.parquet` goes
    template_yaml = code_block("heraldctl", "yaml")
    (tmp_path / "templates.yaml").write_text(template_yaml)
    template_id = yaml.safe_load(template_yaml)["template_id"]
    (tmp_path / "users.txt").write_text("ann\nbob\n\ncy\n")  # the `topics subscribe` line's file
    # The webhook the `send` line reaches fails every attempt, so its delivery is a dead letter to replay.
    failing = f"/readme/dead/{uuid.uuid4().hex[:8]}"
    attempts = len(RETRY_BACKOFF["HERALD_RETRY_BACKOFF_NOTIFICATION"].split(",")) + 1
    sink.answer(failing, *[500] * attempts)
    seen: dict[str, str] = {}  # what earlier lines printed, as a reader would copy it

    async def fill(word: str, argv: list[str]) -> str:
        """A placeholder of the README replaced by the real thing it stands for."""
        match word:
            case "APP_ID":
                return seen["app_id"]
            case "ID":
                return str(template_id)
            case "N":
                return "1"
            case "MESSAGE_ID" if argv[0] == "cancel":  # only a message not dispatched yet can be cancelled
                later = msg.SendRequest(
                    template_id=TEMPLATE, variables={VARIABLE: "A-18"}, recipients=[msg.Recipient(user_id="u1")]
                )
                later.send_at.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
                return await herald.send(bearer(seen["key"]), later)
            case "MESSAGE_ID":
                await herald.wait_message(bearer(seen["key"]), seen["message_id"], all_final)
                return seen["message_id"]
            case "SEQ":
                return await dead_letter_sequence(herald, seen["message_id"])
            case _ if "https://" in word:
                return re.sub(r"https://\S+", sink.url(failing), word)
        raise AssertionError(f"the README has a placeholder {word} this test does not know")

    def check(argv: list[str], output: str) -> None:
        """What the reader of each line looks for in what it printed."""
        app_row = rf"{seen.get('app_id')} +│ checkout +│ webhook +│ notification +│ 50 +│"
        match argv:
            case ["apps", "create", *_]:
                assert re.search(r"│ checkout +│ webhook +│ notification +│ 50 +│", output), output
                seen["app_id"] = re.findall(r"\b(app_\w+)", output)[0]
                seen["key"] = re.findall(r"API key \(shown once, store it now\): (hk_[\w-]+)", output)[0]
            case ["apps", "list" | "get" | "enable", *_]:
                assert re.search(app_row + r" +forever +│ +│", output), output
            case ["apps", "disable", *_]:
                assert re.search(app_row + r" +forever +│ yes +│", output), output
            case ["apps", "rotate-key", *_]:
                assert re.search(r"new API key .*: hk_[\w-]+\nprevious keys stop working at 20", output), output
            case ["apps", "set-retention", *_]:
                assert re.search(app_row + r" 90 days +│", output), output
            case ["templates", "apply", *_]:
                assert output == f"{template_id}: created version 1\n", output
            case ["templates", "list"]:
                assert re.search(rf"{template_id} +│ 1 +│ critical +│ sms +│ code +│", output), output
            case ["templates", "get", *_]:
                assert yaml.safe_load(output)["contents"] == yaml.safe_load(template_yaml)["contents"], output
            case ["templates", "archive", *_]:
                assert output == f"{template_id}: archived\n", output
            case ["templates", "preview", *_]:
                assert "body: 您的验证码是 123" in output, output
            case ["send", *_]:
                seen["message_id"] = output.strip()
                assert re.fullmatch(r"msg_\w+", seen["message_id"]), output
            case ["status", message_id, "--json"]:
                assert json.loads(output)["deliveries"][0]["state"] == "DELIVERY_STATE_FAILED", output
            case ["status", message_id, *_]:
                assert "1 delivery: failed 1" in output and "gave up after" in output, output
            case ["cancel", message_id]:
                assert output == f"{message_id}: cancelled\n", output
            case ["stats", *_, "--by", "provider"]:
                assert "webhook" in output, output
            case ["stats", "--by", "template"]:
                assert TEMPLATE in output, output
            case ["topics", "create", topic, *_]:
                assert output == f"{topic}: created\n", output
            case ["topics", "subscribe", topic, _]:
                assert output == f"{topic}: 3 subscribed (3 in all)\n", output
            case ["topics", "list"]:
                assert re.search(r"release-notes +│ Releases +│ 3 +│", output), output
            case ["topics", "unsubscribe", topic, _]:
                assert output == f"{topic}: 3 unsubscribed (0 in all)\n", output
            case ["topics", "delete", topic]:
                assert output == f"{topic}: deleted\n", output
            case ["export", *_]:
                assert Path(argv[argv.index("--out") + 1]).read_bytes()[:4] == b"PAR1"
            case ["dlq", "list" | "unprocessed", *_]:
                assert "seq" in output, output
            case ["dlq", "replay-unprocessed", *_]:
                assert re.fullmatch(r"replayed \d+\n", output), output
            case ["dlq", "replay", "--channel", *_]:
                assert re.fullmatch(r"replayed \d+\n", output), output
            case ["dlq", "replay", *sequences]:
                assert output == f"replayed {len(sequences)}\n", output
            case ["suppressions", "list", *_]:
                assert "reason" in output and "source" in output, output
            case ["suppressions", "add", channel, address, *_]:
                assert output == f"suppressed {channel} {address} for every category\n", output
            case ["suppressions", "remove", channel, address]:
                assert output == f"{channel} {address} is no longer suppressed for every category\n", output
            case _:
                raise AssertionError(f"the README shows `heraldctl {shlex.join(argv)}`: say what it should print")

    for with_key, line in heraldctl_lines():
        argv = [await fill(w, line) if re.fullmatch(r"[A-Z_]+|https://\S+|\S+=https://\S+", w) else w for w in line]
        result = await asyncio.to_thread(heraldctl, *argv, api_key=seen["key"] if with_key else "")
        check(argv, result.output)
        if argv[:2] == ["apps", "enable"]:
            await accepted_by_feedback(herald, bearer(seen["key"]))

    replayed = await herald.wait_message(
        bearer(seen["key"]), seen["message_id"], lambda m: m.deliveries[0].state == common_pb2.DELIVERY_STATE_SENT
    )
    assert replayed.deliveries[0].attempts == attempts + 1


async def dead_letter_sequence(herald: Herald, message_id: str) -> str:
    """The dead letter of the message's delivery, once the adapters have filed it."""
    async with asyncio.timeout(30):
        while True:
            token = ""
            while True:
                page = await herald.dead_letters.ListDeadLetters(
                    dead_letter_service_pb2.ListDeadLettersRequest(channel="webhook", page_token=token),
                    metadata=herald.admin,
                )
                for dead in page.dead_letters:
                    if dead.delivery_id.startswith(f"{message_id}."):
                        return str(dead.sequence)
                if not (token := page.next_page_token):
                    break
            await asyncio.sleep(0.2)


async def accepted_by_feedback(herald: Herald, app: Metadata) -> None:
    """Once feedback's cache of app keys (libs.auth.CACHE_SECONDS) lets go of the app as it was while disabled."""
    async with asyncio.timeout(CACHE_SECONDS + 10):
        while True:
            unknown = status_service_pb2.GetMessageRequest(message_id="msg_00000000000000000000000000")
            answer = (await rpc_error(herald.status.GetMessage(unknown, metadata=app))).code()
            if answer == grpc.StatusCode.NOT_FOUND:
                return
            assert answer == grpc.StatusCode.PERMISSION_DENIED
            await asyncio.sleep(0.2)


def test_the_readme_templates_that_reach_users_apply_as_written_and_again_unchanged(
    heraldctl: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    [block] = re.findall(r"```yaml\n(.*?)```", section("Sending a message"), re.DOTALL)
    Path("reach.yaml").write_text(block)
    first = heraldctl("templates", "apply", "reach.yaml").output
    assert first.count("created version 1") == 2, first
    assert heraldctl("templates", "apply", "reach.yaml").output.count("unchanged") == 2
    escalating = json.loads(heraldctl("templates", "get", "approval-request", "--json").output)
    assert escalating["escalation"] == [{"channel": "sms", "delay": "600s"}]
    digest = json.loads(heraldctl("templates", "get", "comment-digest", "--json").output)
    assert digest["digest"] == {"window": "600s", "key": "doc"}
    assert digest["variables"] == ["doc"]  # who and text come with each item
