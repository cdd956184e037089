"""herald-gateway's settings: it holds no database or NATS connection, only the addresses of the binaries it
forwards to (the same variables heraldctl and `make up` use) and what its HTTP edge accepts."""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from herald.libs import config, ports, tls

# The largest request message the gateway reads (a SendBatch of 1,000 entries with their variables fits); a
# larger one is refused with resource_exhausted before it reaches a binary.
MAX_REQUEST_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class GatewaySettings:
    addr: str
    metrics_addr: str
    # Where each herald binary serves gRPC: "intake", "router", "adapters", "feedback".
    backends: Mapping[str, str]
    # Browser origins allowed to call the API (CORS); empty = none, so only non-browser callers and pages served
    # by the gateway itself.
    cors_origins: frozenset[str]
    max_request_bytes: int
    server_tls: tls.ServerTls | None
    client_tls: tls.ClientTls | None
    # What the console's page learns from /console/config.json: how to sign operators in, where traces are.
    console: Mapping[str, Any]

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "GatewaySettings":
        origins = env.get("HERALD_GATEWAY_CORS_ORIGINS", "")
        return cls(
            addr=env.get("HERALD_GATEWAY_ADDR") or f"127.0.0.1:{ports.GATEWAY}",
            metrics_addr=env.get("HERALD_METRICS_ADDR") or f"127.0.0.1:{ports.METRICS['gateway']}",
            backends={
                service: env.get(f"HERALD_{service.upper()}_ADDR") or ports.grpc_addr(service) for service in ports.GRPC
            },
            cors_origins=frozenset(o.strip().rstrip("/") for o in origins.split(",") if o.strip()),
            max_request_bytes=config.number(env, "HERALD_GATEWAY_MAX_REQUEST_BYTES", str(MAX_REQUEST_BYTES), int, 1024),
            server_tls=tls.server_from_env(env),
            client_tls=tls.client_from_env(env),
            console=_console(env),
        )


def _console(env: Mapping[str, str]) -> dict[str, Any]:
    """The console signs operators in at HERALD_OIDC_ISSUER as the public client HERALD_CONSOLE_CLIENT_ID
    (authorization code with PKCE: no client secret in a browser); without both, with the admin token only."""
    oidc = config.OidcSettings.from_env(env)
    client_id = env.get("HERALD_CONSOLE_CLIENT_ID", "").strip()
    sign_in = None
    if oidc is not None and client_id:
        sign_in = {
            "issuer": oidc.issuer,
            "clientId": client_id,
            "scope": env.get("HERALD_CONSOLE_SCOPE", "openid"),
            "rolesClaim": oidc.roles_claim,
        }
    return {"oidc": sign_in, "jaegerUrl": env.get("HERALD_CONSOLE_JAEGER_URL", "").rstrip("/")}
