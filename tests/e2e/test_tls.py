"""Transport security end to end: the whole mesh under mutual TLS (certificates on every gRPC port and the HTTP
endpoint, NATS over TLS with a credentials file) delivers, heraldctl works against it, and callers without a certificate
or without TLS at all are refused."""

import json
import os
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from herald.v1 import message_service_pb2 as msg
from typer.testing import CliRunner

from devmesh.mesh import SERVICES, NatsServer, free_port
from herald.tools.heraldctl.main import cli
from tests.conftest import ADMIN_TOKEN, running_mesh
from tests.helpers.client import all_final
from tests.helpers.nats_auth import operator_mode
from tests.helpers.webhook_sink import WebhookSink


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for the loopback address and a client certificate, as PEM files."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("heraldctl@herald.test")
    files = {
        "ca": ca.cert_pem,
        "server.crt": server.cert_chain_pems[0],
        "server.key": server.private_key_pem,
        "client.crt": client.cert_chain_pems[0],
        "client.key": client.private_key_pem,
    }
    paths = {}
    for name, blob in files.items():
        paths[name] = directory / name
        blob.write_to_path(str(paths[name]))
    return paths


async def _health(channel: grpc.aio.Channel) -> None:
    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)


async def test_mesh_under_mutual_tls(tmp_path: Path, sink: WebhookSink) -> None:
    pem = _certificates(tmp_path)
    operator, creds = operator_mode(tmp_path)
    nats = NatsServer(
        tmp_path / "nats",
        args=["-c", str(operator), "--tls", "--tlscert", str(pem["server.crt"]), "--tlskey", str(pem["server.key"])],
    )
    await nats.start()
    client_env = {
        "HERALD_TLS_CA_FILE": str(pem["ca"]),
        "HERALD_TLS_CLIENT_CERT_FILE": str(pem["client.crt"]),
        "HERALD_TLS_CLIENT_KEY_FILE": str(pem["client.key"]),
    }
    env = {
        "HERALD_TLS_CERT_FILE": str(pem["server.crt"]),
        "HERALD_TLS_KEY_FILE": str(pem["server.key"]),
        "HERALD_TLS_CLIENT_CA_FILE": str(pem["ca"]),
        "HERALD_NATS_CA_FILE": str(pem["ca"]),
        "HERALD_NATS_CREDS_FILE": str(creds),
        **client_env,
    }
    try:
        async with running_mesh(tmp_path / "mesh", "sqlite", env, f"tls://127.0.0.1:{nats.port}") as (mesh, herald):
            # Delivered end to end: intake, router, adapters and feedback talk over NATS under TLS, and the test
            # drives them through channels that present the client certificate.
            _, app = await herald.create_app()
            template = await herald.create_template({"webhook": '{"text": "Order {{ order }} shipped"}'})
            path = f"/tls/{uuid.uuid4().hex[:8]}"
            message_id = await herald.send(
                app,
                msg.SendRequest(
                    template_id=template,
                    variables={"order": "A-17"},
                    recipients=[msg.Recipient(user_id="u1", addresses={"webhook": sink.url(path)})],
                ),
            )
            [hit] = await sink.wait_for(path)
            assert json.loads(hit.body) == {"text": "Order A-17 shipped"} and hit.signature_ok
            await herald.wait_message(app, message_id, all_final)

            # heraldctl, trusting the CA and presenting its certificate; without the certificate it cannot reach.
            addrs = {f"HERALD_{s.upper()}_ADDR": mesh.addr(s) for s in SERVICES}
            ctl = {**addrs, "HERALD_ADMIN_TOKEN": ADMIN_TOKEN, "COLUMNS": "250"}
            listed = CliRunner().invoke(cli, ["templates", "list"], env={**ctl, **client_env})
            assert listed.exit_code == 0 and template in listed.output, listed.output
            anonymous = {**client_env, "HERALD_TLS_CLIENT_CERT_FILE": "", "HERALD_TLS_CLIENT_KEY_FILE": ""}
            assert CliRunner().invoke(cli, ["templates", "list"], env={**ctl, **anonymous}).exit_code == 3

            # Every gRPC port refuses a caller without a client certificate, and one speaking plaintext.
            trusting = grpc.ssl_channel_credentials(root_certificates=pem["ca"].read_bytes())
            for service in SERVICES:
                for refused in (
                    grpc.aio.secure_channel(mesh.addr(service), trusting),
                    grpc.aio.insecure_channel(mesh.addr(service)),
                ):
                    async with refused:
                        with pytest.raises(grpc.aio.AioRpcError) as error:
                            await _health(refused)
                        assert error.value.code() == grpc.StatusCode.UNAVAILABLE, service

            # The receipts endpoint serves HTTPS (a provider has no client certificate to present) and no HTTP.
            receipts = mesh.receipts_url("nope")
            assert receipts.startswith("https://")
            trust = ssl.create_default_context(cafile=pem["ca"])
            async with aiohttp.ClientSession() as http:
                async with http.post(receipts, data=b"{}", ssl=trust) as reply:
                    assert reply.status == 403  # answered: no such account
                with pytest.raises(aiohttp.ClientError):
                    async with http.post(receipts.replace("https://", "http://"), data=b"{}") as reply:
                        await reply.read()
    finally:
        await nats.stop()


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"HERALD_TLS_CERT_FILE": "server.crt", "HERALD_TLS_KEY_FILE": "missing.key"}, "HERALD_TLS_KEY_FILE: no file"),
        ({"HERALD_TLS_CERT_FILE": "server.crt", "HERALD_TLS_KEY_FILE": "client.key"}, "HERALD_TLS_CERT_FILE / "),
        (
            {"HERALD_TLS_CLIENT_CERT_FILE": "client.crt", "HERALD_TLS_CLIENT_KEY_FILE": "client.key"},
            "needs HERALD_TLS_CA_FILE",
        ),
        ({"HERALD_TLS_CA_FILE": "client.key"}, "HERALD_TLS_CA_FILE: expected PEM CA certificates"),
        ({"HERALD_NATS_CREDS_FILE": "ca"}, "HERALD_NATS_CREDS_FILE: "),
    ],
)
def test_bad_certificate_files_stop_a_binary_before_it_connects(
    tmp_path: Path, variables: dict[str, str], named: str
) -> None:
    _certificates(tmp_path)
    env = {
        **os.environ,
        # Nothing listens there: a binary that got past its configuration would wait for NATS, not exit.
        "HERALD_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "HERALD_DATA_DIR": str(tmp_path / "data"),
        **{variable: str(tmp_path / file) for variable, file in variables.items()},
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "herald-feedback")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "herald-feedback: bad configuration: " in done.stderr and named in done.stderr, done.stderr
