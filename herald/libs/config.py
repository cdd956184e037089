"""What every binary is configured with, and the one way a setting is read: from the environment only, a bad
value named by its variable. Each service's own settings are beside it (herald/services/<service>/settings.py), read
with these helpers; herald/libs/runtime.py reads both before anything connects."""

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from herald.v1 import common_pb2

from herald.libs import categories, ports, tls

# A message a stage failed on for a reason other than an outage (herald/libs/bus/consuming.py, Broken): the delay
# before each retry; once they are spent it is dead-lettered. About 18 minutes in all, so a failure that only looked
# deterministic (a dependency's odd error) still has time to clear.
STAGE_RETRY_BACKOFF = (2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0)

# PostgreSQL connections each binary keeps open unless HERALD_DATABASE_POOL_SIZE says otherwise.
DEFAULT_POOL_SIZE = 10

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    audience: str
    # Where the issuer publishes its keys; empty = the jwks_uri of its discovery document.
    jwks_url: str
    # The claim holding the operator's roles: a list of strings, or one space-separated string.
    roles_claim: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "OidcSettings | None":
        """None when HERALD_OIDC_ISSUER is unset: operators then have only the admin token."""
        issuer = env.get("HERALD_OIDC_ISSUER", "").strip()
        if not issuer:
            return None
        audience = env.get("HERALD_OIDC_AUDIENCE", "").strip()
        if not audience:
            raise ValueError(
                "HERALD_OIDC_AUDIENCE: required with HERALD_OIDC_ISSUER (the client id herald's tokens name)"
            )
        return cls(
            issuer=issuer,
            audience=audience,
            jwks_url=env.get("HERALD_OIDC_JWKS_URL", "").strip(),
            roles_claim=env.get("HERALD_OIDC_ROLES_CLAIM", "").strip() or "roles",
        )


@dataclass(frozen=True)
class Settings:
    service: str
    grpc_addr: str
    nats_url: str
    database_url: str
    # PostgreSQL connections this binary keeps open: size it so that every replica's fit the server's
    # max_connections (each may open herald.libs.store.BURST_CONNECTIONS more for a moment).
    database_pool_size: int
    data_dir: Path
    admin_token: str
    # Operators' sign-in (herald/libs/oidc.py verifies their tokens); None = the admin token only.
    oidc: OidcSettings | None
    # JetStream replicas for herald's streams: 1 for one server, 3 in the Kubernetes cluster.
    stream_replicas: int
    # The delays before each retry of a message a stage failed on for a reason other than an outage, before it is
    # dead-lettered (herald/libs/bus/consuming.py). HERALD_STAGE_RETRY_BACKOFF="2,4,8" overrides STAGE_RETRY_BACKOFF.
    stage_retry_backoff: tuple[float, ...]
    # Where this binary serves its Prometheus metrics (HTTP, GET /metrics).
    metrics_addr: str
    # Transport security (herald/libs/tls.py): what this binary serves with, what its own clients trust and present,
    # and how it authenticates to NATS; None = plaintext, the dev default.
    server_tls: tls.ServerTls | None
    client_tls: tls.ClientTls | None
    nats_auth: tls.NatsAuth

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str] = os.environ) -> "Settings":
        data_dir = Path(env.get("HERALD_DATA_DIR", ".herald"))
        return cls(
            service=service,
            grpc_addr=env.get("HERALD_GRPC_ADDR") or ports.grpc_addr(service),
            nats_url=env.get("HERALD_NATS_URL") or "nats://127.0.0.1:4222",
            database_url=normalize_database_url(env.get("HERALD_DATABASE_URL", ""), data_dir, service),
            database_pool_size=number(env, "HERALD_DATABASE_POOL_SIZE", str(DEFAULT_POOL_SIZE), int, 1),
            data_dir=data_dir,
            admin_token=env.get("HERALD_ADMIN_TOKEN", ""),
            oidc=OidcSettings.from_env(env),
            stream_replicas=number(env, "HERALD_STREAM_REPLICAS", "1", int, 1),
            stage_retry_backoff=delays(env, "HERALD_STAGE_RETRY_BACKOFF") or STAGE_RETRY_BACKOFF,
            metrics_addr=env.get("HERALD_METRICS_ADDR") or f"127.0.0.1:{ports.METRICS[service]}",
            server_tls=tls.server_from_env(env),
            client_tls=tls.client_from_env(env),
            nats_auth=tls.nats_from_env(env),
        )


def normalize_database_url(url: str, data_dir: Path, service: str) -> str:
    """Pick the async driver for a plain URL; no URL means the embedded SQLite file of this service.

    Each service gets its own SQLite file, so no service can read another's tables
    and the four processes never contend for one file's write lock.
    """
    if not url:
        data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{(data_dir / f'{service}.db').resolve()}"
    for plain, driver in (
        ("postgresql://", "postgresql+psycopg://"),
        ("postgres://", "postgresql+psycopg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            url = driver + url[len(plain) :]
            break
    return _several_hosts(url) if url.startswith("postgresql") else url


def _several_hosts(url: str) -> str:
    """A libpq URL naming several hosts (`postgresql://u@primary:5432,standby:5432/db`) in the form SQLAlchemy
    reads (`?host=primary:5432&host=standby:5432`), asking for the host that accepts writes unless the URL says
    otherwise: after a failover, new connections find the new primary."""
    scheme, sep, rest = url.partition("://")
    authority, _, tail = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if "," not in hosts:
        return url
    database, _, query = tail.partition("?")
    params = [f"host={h}" for h in hosts.split(",") if h] + ([query] if query else [])
    if "target_session_attrs=" not in query:
        params.append("target_session_attrs=read-write")
    return f"{scheme}{sep}{userinfo}{at}/{database}?{'&'.join(params)}"


def pipelines(env: Mapping[str, str]) -> tuple[common_pb2.Category.ValueType, ...]:
    """The categories whose pipelines a router or adapters process consumes (HERALD_PIPELINES, herald.v1.Category
    names): all by default; a deployment may give critical traffic processes of its own."""
    chosen = [n.strip().lower() for n in env.get("HERALD_PIPELINES", "").split(",") if n.strip()]
    if unknown := [n for n in chosen if n not in categories.BY_NAME]:
        raise ValueError(f"HERALD_PIPELINES: unknown categories {unknown}; known: {', '.join(categories.BY_NAME)}")
    return tuple(categories.BY_NAME[n] for n in chosen) or categories.KNOWN


def allowed_hosts(env: Mapping[str, str]) -> frozenset[str]:
    """HERALD_WEBHOOK_ALLOWED_HOSTS: private or loopback hosts that outgoing webhooks (a channel's, an app's status
    webhook) may reach all the same (herald/libs/ssrf.py)."""
    return frozenset(h.strip().lower() for h in env.get("HERALD_WEBHOOK_ALLOWED_HOSTS", "").split(",") if h.strip())


def retention_check_seconds(env: Mapping[str, str]) -> float:
    """How often intake and feedback purge what they no longer keep (herald/services/*/retention.py)."""
    return number(env, "HERALD_RETENTION_CHECK_SECONDS", "3600", float, 0.1)


def delays(env: Mapping[str, str], variable: str) -> tuple[float, ...]:
    """A comma-separated list of delays in seconds; () when the variable is unset, for the caller's default."""
    value = env.get(variable, "")
    return tuple(_parse(variable, part, float, 0.0) for part in value.split(",")) if value else ()


def number(env: Mapping[str, str], variable: str, default: str, kind: type[N], least: N) -> N:
    return _parse(variable, env.get(variable, default), kind, least)


def _parse(variable: str, text: str, kind: type[N], least: N) -> N:
    """`text` as a finite `kind` of at least `least`. A bare ValueError would not say which variable is wrong;
    this one names it, what it expects and what it got, and the binary stops with it before connecting."""
    try:
        parsed = kind(text)
    except ValueError:
        parsed = None
    if parsed is None or not math.isfinite(parsed) or parsed < least:
        what = "a whole number" if kind is int else "a number of seconds"
        raise ValueError(f"{variable}: expected {what} >= {least:g}, got {text!r}")
    return parsed
