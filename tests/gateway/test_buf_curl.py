"""A third party's client: `buf curl` (the Buf CLI from npm's @bufbuild/buf, reading the protos) calls Send and
GetMessage through herald-gateway with JSON, knowing nothing of herald but its schema."""

import asyncio
import json
import uuid
from asyncio.subprocess import PIPE
from pathlib import Path

from devmesh.mesh import Mesh
from tests.helpers.client import Herald
from tests.helpers.webhook_sink import WebhookSink

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
BUF = ROOT / "web" / "node_modules" / ".bin" / "buf"  # `make install`


async def buf_curl(url: str, key: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    run = await asyncio.create_subprocess_exec(
        str(BUF), "curl", "--schema", str(PROTOS), "--header", f"Authorization: Bearer {key}",
        "--data", json.dumps(body), url, stdout=PIPE, stderr=PIPE,
    )  # fmt: skip
    printed, errors = await asyncio.wait_for(run.communicate(), 60)
    return run.returncode or 0, json.loads(printed or errors)


async def test_buf_curl_sends_and_reads_what_became_of_it(shared_mesh: tuple[Mesh, Herald], sink: WebhookSink) -> None:
    mesh, herald = shared_mesh
    _, app = await herald.create_app()
    key = app[0][1].removeprefix("Bearer ")
    template = await herald.create_template({"webhook": '{"text": "{{ text }}"}'})
    path = f"/buf-curl/{uuid.uuid4().hex[:8]}"
    code, sent = await buf_curl(
        f"{mesh.gateway_url}/herald.v1.MessageService/Send",
        key,
        {
            "templateId": template,
            "variables": {"text": "hi"},
            "recipients": [{"addresses": {"webhook": sink.url(path)}}],
        },
    )
    assert code == 0, sent
    [request] = await sink.wait_for(path)
    assert json.loads(request.body) == {"text": "hi"}
    async with asyncio.timeout(30):
        while True:
            code, message = await buf_curl(
                f"{mesh.gateway_url}/herald.v1.StatusService/GetMessage", key, {"messageId": sent["messageId"]}
            )
            if code == 0 and message.get("deliveryCount") == "1":  # an int64: a string in proto3 JSON
                break
            assert code == 0 or message.get("code") == "not_found", message
            await asyncio.sleep(0.2)
    assert message["templateId"] == template
