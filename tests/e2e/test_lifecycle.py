"""What an SRE relies on: health that tells the truth, reflection, and a clean exit on SIGTERM."""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from herald.v1 import message_service_pb2 as msg

from devmesh.mesh import SERVICES, Mesh, free_port
from tests.conftest import running_mesh
from tests.gateway.connect import call
from tests.helpers.client import Herald
from tests.helpers.databases import default_backend
from tests.helpers.metrics import scrape
from tests.helpers.webhook_sink import WebhookSink

# Whole meshes started, killed or kept waiting: run first, beside the rest (tests/conftest.py).
pytestmark = pytest.mark.slow

# The repo root, where `make up` runs the launcher: devmesh is not installed, it is found from here.
ROOT = Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
EXPECTED_SERVICES = {
    "intake": {"herald.v1.AdminService", "herald.v1.MessageService"},
    "router": {"herald.v1.DirectoryService", "herald.v1.RoutingService"},
    "adapters": set(),
    "feedback": {"herald.v1.StatusService"},
}


async def _health(addr: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(addr) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
        return int(reply.status)


async def _reflect(
    addr: str, version: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    """One reflection request, over grpc.reflection.<version> ("v1" or "v1alpha": the same messages, so the v1alpha
    stubs' messages serve both, by the method's path)."""
    async with grpc.aio.insecure_channel(addr) as channel:
        info = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        async for reply in info(iter([request])):
            return reply
    raise AssertionError(f"no reply from grpc.reflection.{version}")


async def _reflected_services(addr: str, version: str) -> set[str]:
    reply = await _reflect(addr, version, reflection_pb2.ServerReflectionRequest(list_services=""))
    return {s.name for s in reply.list_services_response.service}


async def test_every_binary_serves_health_and_reflection(shared_mesh: tuple[Mesh, Herald]) -> None:
    mesh, _ = shared_mesh
    for service in SERVICES:
        addr = mesh.addr(service)
        assert await _health(addr) == SERVING
        # Both reflection versions: v1 is what current grpcurl and Postman ask first; older clients ask v1alpha.
        for version in ("v1", "v1alpha"):
            listed = await _reflected_services(addr, version)
            assert EXPECTED_SERVICES[service] <= listed
            assert {
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            } <= listed
            for name in listed:  # what `grpcurl describe` does with each listed service
                request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=name)
                reply = await _reflect(addr, version, request)
                assert reply.file_descriptor_response.file_descriptor_proto, (version, name, reply.error_response)
        for name in EXPECTED_SERVICES[service]:
            assert await _health(addr, name) == SERVING


async def _wait_health(addr: str, want: int, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while await _health(addr) != want:
            await asyncio.sleep(0.2)


async def test_health_follows_the_nats_connection_and_sigterm_exits_cleanly(tmp_path: Path) -> None:
    async with running_mesh(tmp_path, default_backend()) as (mesh, herald):
        assert mesh.nats is not None
        _, app = await herald.create_app()
        template = await herald.create_template({"webhook": "{}"})
        request = msg.SendRequest(template_id=template, recipients=[msg.Recipient(addresses={"webhook": "http://x/"})])
        await mesh.nats.stop()
        for service in SERVICES:
            await _wait_health(mesh.addr(service), NOT_SERVING)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await herald.messages.Send(request, metadata=app)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, "a bus outage is UNAVAILABLE (retry), not INTERNAL"
        await mesh.nats.start()
        for service in SERVICES:
            await _wait_health(mesh.addr(service), SERVING)
        codes = {s: await b.stop(signal.SIGTERM) for s, b in mesh.binaries.items()}
        assert codes == dict.fromkeys(SERVICES, 0)


def _launcher_env(data_dir: Path) -> dict[str, str]:
    """Every address `make up` binds, on ports of its own."""
    return {
        "HERALD_DATA_DIR": str(data_dir),
        **{f"HERALD_{s.upper()}_ADDR": f"127.0.0.1:{free_port()}" for s in (*SERVICES, "gateway")},
        **{f"HERALD_{s.upper()}_METRICS_ADDR": f"127.0.0.1:{free_port()}" for s in (*SERVICES, "gateway")},
        "HERALD_RECEIPTS_ADDR": f"127.0.0.1:{free_port()}",
    }


async def _launch(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, list[str]]:
    """`make up`'s launcher, and what it printed until "herald is up"."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devmesh.launcher",
        env={**_clean_env(), **env},
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(120):
        while (line := (await proc.stdout.readline()).decode()) and line.strip() != "herald is up":
            lines.append(line.strip())
    assert line.strip() == "herald is up", lines
    return proc, lines


async def test_two_make_up_meshes_run_side_by_side_and_stop_on_sigterm(tmp_path: Path) -> None:
    """Every address the launcher binds - gRPC, the gateway's, metrics, receipts - follows its variable, and it
    prints them, so two meshes share a host; neither prints a secret, and SIGTERM stops each cleanly."""
    envs = [_launcher_env(tmp_path / name / ".herald") for name in ("one", "two")]
    # One after the other: a launcher's NATS server takes a free port, which may be one the other's binaries were
    # about to bind. Side by side is what is tested: both run at once from then on.
    launched: list[tuple[asyncio.subprocess.Process, list[str]]] = []
    try:
        for env in envs:
            launched.append(await _launch(env))
        for env, (_, lines) in zip(envs, launched, strict=True):
            printed = "\n".join(lines)
            for service in SERVICES:
                assert env[f"HERALD_{service.upper()}_ADDR"] in printed
                assert await _health(env[f"HERALD_{service.upper()}_ADDR"]) == SERVING
                metrics = f"http://{env[f'HERALD_{service.upper()}_METRICS_ADDR']}/metrics"
                assert metrics in printed
                assert await scrape(metrics), f"{service}'s metrics answer where the launcher said"
            assert env["HERALD_RECEIPTS_ADDR"] in printed
            assert f"gateway   http://{env['HERALD_GATEWAY_ADDR']}" in printed
            assert await scrape(f"http://{env['HERALD_GATEWAY_METRICS_ADDR']}/metrics")
            secret = (Path(env["HERALD_DATA_DIR"]) / "admin-token").read_text()
            assert secret not in printed, "the launcher must not print secrets"
    finally:
        for proc, _ in launched:
            proc.send_signal(signal.SIGTERM)
    assert [await asyncio.wait_for(proc.wait(), 60) for proc, _ in launched] == [0, 0]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "OTEL_"))}


async def test_a_send_answered_unavailable_while_the_broker_is_down_is_never_delivered(
    tmp_path: Path, sink: WebhookSink
) -> None:
    """UNAVAILABLE tells the caller to retry; had the message gone out later anyway, a retry would send it twice.
    Over HTTP the same: 503 unavailable from herald-gateway, while the broker is down and while intake is."""
    async with running_mesh(tmp_path, default_backend(), gateway=True) as (mesh, herald):
        assert mesh.nats is not None
        _, app = await herald.create_app()
        template = await herald.create_template({"webhook": "{}"})
        path = f"/while-down/{uuid.uuid4().hex[:8]}"
        request = msg.SendRequest(
            template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})]
        )
        await herald.send(app, request)  # warms intake's caches of the app and the template
        await sink.wait_for(path)
        await mesh.nats.stop()
        key = app[0][1].removeprefix("Bearer ")
        over_http = json_format.MessageToDict(request)
        async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as http:
            for _ in range(5):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await herald.messages.Send(request, metadata=app)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                answer = await call(http, "herald.v1.MessageService/Send", over_http, key)
                assert (answer.status, answer.code) == (503, "unavailable")
        await mesh.nats.start()
        async with asyncio.timeout(30):  # as a caller would: retry until intake is back on the bus
            while True:
                try:
                    after = await herald.send(app, request)
                    break
                except grpc.aio.AioRpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    await asyncio.sleep(0.2)
        hits = await sink.wait_for(path, 2)
        assert hits[-1].headers["Herald-Message-Id"] == after
        await asyncio.sleep(3)
        assert len(sink.for_path(path)) == 2, "a Send answered UNAVAILABLE went out after all"
        await mesh.binaries["intake"].stop()
        async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as http:
            answer = await call(http, "herald.v1.MessageService/Send", over_http, key)
        assert (answer.status, answer.code) == (503, "unavailable")
        assert answer.body["message"] == "herald-intake is unavailable; retry later"
