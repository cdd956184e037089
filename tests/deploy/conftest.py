"""A mixed run on a mesh of its own, scraped: what the golden-signal, dashboard and alert tests read; and the
manifests as `kubectl apply -k deploy/k8s` renders them."""

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import httpx
import pytest
import yaml
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as pb
from herald.v1 import routing_service_pb2 as routing_pb

from devmesh.mesh import Mesh
from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.adapters.sms import PHONE, sms_template, twilio_account
from tests.conftest import PROVIDER_ENV, running_mesh
from tests.deploy.manifests import K8S_DIR
from tests.gateway.connect import call
from tests.helpers.client import Herald, Metadata, all_final, rpc_error
from tests.helpers.databases import default_backend
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2
# Sends to the rate-limited app, at once, against its limit of one a second.
BURST = 6


@dataclass(frozen=True)
class MixedRun:
    """What the run did, as its caller saw it, and each binary's /metrics text after it."""

    metrics: dict[str, str]
    app_id: str
    limited_app_id: str
    twilio_account: str
    # Of the BURST sends to the rate-limited app: how many were accepted, how many refused RESOURCE_EXHAUSTED.
    limited_accepted: int
    limited_refused: int


@pytest.fixture(scope="package")
async def mixed_run(tmp_path_factory: pytest.TempPathFactory, sink: WebhookSink) -> AsyncIterator[MixedRun]:
    """On a fresh mesh, so every count is exactly this run's: webhooks sent, failed for good, and retried until
    dead-lettered; one suppressed (no address); an SMS sent and then reported DELIVERED by the provider; Sends
    refused as invalid, as not permitted and by a rate limit."""
    twilio = FakeTwilio(account_sid="AC" + "3" * 32, auth_token=PROVIDER_ENV["HERALD_PROVIDER_TEST_SECRET"])
    await twilio.start()
    try:
        async with running_mesh(tmp_path_factory.mktemp("golden"), default_backend(), gateway=True) as (mesh, herald):
            account = f"twilio-{uuid.uuid4().hex[:6]}"
            await herald.providers.CreateProviderAccount(
                pb.CreateProviderAccountRequest(
                    account=twilio_account(account, twilio, status_callback_url=mesh.receipts_url(account))
                ),
                metadata=herald.admin,
            )
            app_id, app = await herald.create_app(("webhook", "sms"))
            webhook = await herald.create_template({"webhook": "{}"})
            sms = await sms_template(herald)
            run = f"/golden/{uuid.uuid4().hex[:8]}"
            sink.answer(f"{run}/gone", 404)
            sink.answer(f"{run}/down", *[503] * 10)
            sent = [await _send(herald, app, webhook, {"webhook": sink.url(f"{run}/ok")}) for _ in range(3)]
            failed = await _send(herald, app, webhook, {"webhook": sink.url(f"{run}/gone")})
            dead = await _send(herald, app, webhook, {"webhook": sink.url(f"{run}/down")})
            nowhere = await herald.send(
                app, msg.SendRequest(template_id=webhook, recipients=[msg.Recipient(user_id="nobody")])
            )
            code = await herald.send(
                app,
                msg.SendRequest(
                    template_id=sms, recipients=[msg.Recipient(addresses={"sms": PHONE})], variables={"code": "7"}
                ),
            )
            for message_id in (*sent, failed, dead, nowhere, code):
                await herald.wait_message(app, message_id, all_final)
            assert await twilio.report(twilio.issued[-1], "delivered") == 200
            await herald.wait_message(app, code, lambda m: m.deliveries[0].state == S.DELIVERY_STATE_DELIVERED)

            explained = await herald.routing.ExplainRouting(
                routing_pb.ExplainRoutingRequest(app_id=app_id, template_id=webhook, user_id="nobody"),
                metadata=herald.admin,
            )
            assert explained.verdicts

            invalid = msg.SendRequest(template_id=webhook)  # no recipients
            assert (await rpc_error(herald.send(app, invalid))).code() == grpc.StatusCode.INVALID_ARGUMENT
            _, webhook_only = await herald.create_app(("webhook",))
            to_phone = msg.SendRequest(template_id=sms, recipients=[msg.Recipient(addresses={"sms": PHONE})])
            assert (await rpc_error(herald.send(webhook_only, to_phone))).code() == grpc.StatusCode.PERMISSION_DENIED
            limited_app_id, limited = await herald.create_app(rate=1)
            burst = msg.SendRequest(
                template_id=webhook, recipients=[msg.Recipient(addresses={"webhook": sink.url(f"{run}/ok")})]
            )
            answers = await asyncio.gather(*(herald.send(limited, burst) for _ in range(BURST)), return_exceptions=True)
            accepted = [a for a in answers if isinstance(a, str)]
            refused = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
            assert {e.code() for e in refused} <= {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert refused, "a burst over the limit is refused in part"
            for message_id in accepted:
                await herald.wait_message(limited, message_id, all_final)
            # Over HTTP: one GetMessage, and one Send the gateway itself refuses (JSON that does not fit).
            key = app[0][1].removeprefix("Bearer ")
            async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as http:
                got = await call(http, "herald.v1.StatusService/GetMessage", {"messageId": sent[0]}, key)
                assert got.status == 200
                unfit = await call(http, "herald.v1.MessageService/Send", {"templateId": 7}, key)
                assert unfit.status == 400

            yield MixedRun(
                metrics=await _scrape_all(mesh),
                app_id=app_id,
                limited_app_id=limited_app_id,
                twilio_account=account,
                limited_accepted=len(accepted),
                limited_refused=len(refused),
            )
    finally:
        await twilio.stop()


async def _send(herald: Herald, app: Metadata, template: str, addresses: dict[str, str]) -> str:
    return await herald.send(
        app, msg.SendRequest(template_id=template, recipients=[msg.Recipient(addresses=addresses)])
    )


async def _scrape_all(mesh: Mesh) -> dict[str, str]:
    texts = {}
    async with aiohttp.ClientSession() as http:
        for service in mesh.binaries:
            async with http.get(mesh.metrics_url(service)) as reply:
                assert reply.status == 200
                texts[service] = await reply.text()
    return texts


@pytest.fixture(scope="package")
def rendered() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/k8s` applies."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]
