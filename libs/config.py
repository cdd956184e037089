"""The one config loader: every binary is configured by environment variables only."""

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from herald.v1 import common_pb2

from libs import categories, ports, tls

# A message a stage failed on for a reason other than an outage (libs/bus.py, Broken): the delay before each
# retry; once they are spent it is dead-lettered. About 18 minutes in all, so a failure that only looked
# deterministic (a dependency's odd error) still has time to clear.
STAGE_RETRY_BACKOFF = (2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0)

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Settings:
    service: str
    grpc_addr: str
    nats_url: str
    database_url: str
    data_dir: Path
    admin_token: str
    webhook_allowed_hosts: frozenset[str]
    webhook_signing_secret: str
    # JetStream replicas for herald's streams: 1 for one server, 3 in the Kubernetes cluster.
    stream_replicas: int
    # The same content to the same recipient and channel goes out once within this many seconds; 0 = off.
    dedup_window_seconds: float
    # Where herald-intake answers, for the router's questions about apps and templates.
    intake_addr: str
    # The categories whose pipelines this router or adapters process consumes (herald.v1.Category values):
    # all by default; a deployment may give critical traffic processes of its own.
    pipelines: tuple[common_pb2.Category.ValueType, ...]
    # Per category, the delays in seconds before each retry of a failed delivery; their number is the number
    # of retries. HERALD_RETRY_BACKOFF_<CATEGORY>="1,2,4" overrides categories.RETRY_BACKOFF.
    retry_backoff: dict[common_pb2.Category.ValueType, tuple[float, ...]]
    # The delays before each retry of a message a stage failed on for a reason other than an outage, before it is
    # dead-lettered (libs/bus.py). HERALD_STAGE_RETRY_BACKOFF="2,4,8" overrides STAGE_RETRY_BACKOFF.
    stage_retry_backoff: tuple[float, ...]
    # intake refuses new marketing messages (RESOURCE_EXHAUSTED, with when to retry) while more marketing work
    # than this waits in the queues behind it (services/intake/shedding.py); 0 = never.
    marketing_backlog_limit: int
    # Where herald-adapters listens (HTTP) for delivery receipts that providers post.
    receipts_addr: str
    # Keys for the inbox tokens devices read their user's inbox with (comma-separated: the first signs, all
    # verify); "" = no inbox tokens, only app API keys.
    inbox_token_secret: str
    # The public address of herald-adapters' HTTP endpoint (HERALD_RECEIPTS_ADDR behind your ingress), for the
    # tracked links and open pixels of e-mail, and the keys that sign them (comma-separated: the first signs, all
    # verify); tracking is off while either is "".
    tracking_url: str
    tracking_secret: str
    # How many days a tracked link or open pixel works, at most the app's content retention.
    tracking_ttl_days: int
    # Where this binary serves its Prometheus metrics (HTTP, GET /metrics).
    metrics_addr: str
    # How often intake and feedback purge what they no longer keep (services/*/retention.py).
    retention_check_seconds: float
    # Transport security (libs/tls.py): what this binary serves with, what its own clients trust and present,
    # and how it authenticates to NATS; None = plaintext, the dev default.
    server_tls: tls.ServerTls | None
    client_tls: tls.ClientTls | None
    nats_auth: tls.NatsAuth

    @classmethod
    def from_env(cls, service: str) -> "Settings":
        env = os.environ
        data_dir = Path(env.get("HERALD_DATA_DIR", ".herald"))
        hosts = env.get("HERALD_WEBHOOK_ALLOWED_HOSTS", "")
        return cls(
            service=service,
            grpc_addr=env.get("HERALD_GRPC_ADDR") or ports.grpc_addr(service),
            nats_url=env.get("HERALD_NATS_URL") or "nats://127.0.0.1:4222",
            database_url=normalize_database_url(env.get("HERALD_DATABASE_URL", ""), data_dir, service),
            data_dir=data_dir,
            admin_token=env.get("HERALD_ADMIN_TOKEN", ""),
            webhook_allowed_hosts=frozenset(h.strip().lower() for h in hosts.split(",") if h.strip()),
            webhook_signing_secret=env.get("HERALD_WEBHOOK_SIGNING_SECRET", ""),
            stream_replicas=_number("HERALD_STREAM_REPLICAS", env.get("HERALD_STREAM_REPLICAS", "1"), int, 1),
            dedup_window_seconds=_number(
                "HERALD_DEDUP_WINDOW_SECONDS", env.get("HERALD_DEDUP_WINDOW_SECONDS", "0"), float, 0.0
            ),
            intake_addr=env.get("HERALD_INTAKE_ADDR") or ports.grpc_addr("intake"),
            pipelines=_pipelines(env.get("HERALD_PIPELINES", "")),
            retry_backoff={
                category: _delays(f"HERALD_RETRY_BACKOFF_{name.upper()}", env) or categories.RETRY_BACKOFF[category]
                for name, category in categories.BY_NAME.items()
            },
            stage_retry_backoff=_delays("HERALD_STAGE_RETRY_BACKOFF", env) or STAGE_RETRY_BACKOFF,
            marketing_backlog_limit=_number(
                "HERALD_MARKETING_BACKLOG_LIMIT", env.get("HERALD_MARKETING_BACKLOG_LIMIT", "1000000"), int, 0
            ),
            receipts_addr=env.get("HERALD_RECEIPTS_ADDR") or f"127.0.0.1:{ports.RECEIPTS}",
            inbox_token_secret=env.get("HERALD_INBOX_TOKEN_SECRET", ""),
            tracking_url=env.get("HERALD_TRACKING_URL", ""),
            tracking_secret=env.get("HERALD_TRACKING_SECRET", ""),
            tracking_ttl_days=_number("HERALD_TRACKING_TTL_DAYS", env.get("HERALD_TRACKING_TTL_DAYS", "30"), int, 1),
            metrics_addr=env.get("HERALD_METRICS_ADDR") or f"127.0.0.1:{ports.METRICS[service]}",
            retention_check_seconds=_number(
                "HERALD_RETENTION_CHECK_SECONDS", env.get("HERALD_RETENTION_CHECK_SECONDS", "3600"), float, 0.1
            ),
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


def _pipelines(names: str) -> tuple[common_pb2.Category.ValueType, ...]:
    chosen = [n.strip().lower() for n in names.split(",") if n.strip()]
    if unknown := [n for n in chosen if n not in categories.BY_NAME]:
        raise ValueError(f"HERALD_PIPELINES: unknown categories {unknown}; known: {', '.join(categories.BY_NAME)}")
    return tuple(categories.BY_NAME[n] for n in chosen) or categories.KNOWN


def _delays(variable: str, env: Mapping[str, str]) -> tuple[float, ...]:
    value = env.get(variable, "")
    return tuple(_number(variable, part, float, 0.0) for part in value.split(",")) if value else ()


def _number(variable: str, text: str, kind: type[N], least: N) -> N:
    """`text` as a finite `kind` of at least `least`. A bare ValueError would not say which variable is wrong;
    this one names it, what it expects and what it got, and the binary stops with it before connecting."""
    try:
        number = kind(text)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or number < least:
        what = "a whole number" if kind is int else "a number of seconds"
        raise ValueError(f"{variable}: expected {what} >= {least:g}, got {text!r}")
    return number
