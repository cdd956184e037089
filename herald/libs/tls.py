"""Transport security, from the variables shared/spec/contract.md names (docs/operations.md, "TLS").

Each part is None while its variables are unset, the dev default of `make up`: then that side speaks plaintext.
Files are read and checked when a binary starts, before it connects anywhere, so a wrong path or a key that does not
match its certificate stops it with a "bad configuration" naming the variable; certificates are read again only by
a restart.
"""

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

# What a NATS credentials file holds (nsc writes it): the user's JWT and the nkey seed that signs its connects.
CREDS_MARKERS = ("-----BEGIN NATS USER JWT-----", "USER NKEY SEED-----")


@dataclass(frozen=True)
class ServerTls:
    """The certificate every gRPC port and HTTP endpoint of a binary (metrics aside) serves; with `client_ca`,
    callers must present a certificate it signed (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.client_ca.read_bytes() if self.client_ca else None,
            require_client_auth=self.client_ca is not None,
        )

    def http_context(self) -> ssl.SSLContext:
        """For the HTTP endpoint: it never asks for a client certificate, because its callers (providers posting
        receipts, readers' mail clients opening tracked links) come from outside and have none to present."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@dataclass(frozen=True)
class ClientTls:
    """What herald's own clients (a binary calling another, heraldctl, the local mesh's health checks) trust, and
    the certificate they present where servers ask for one."""

    ca: Path
    cert: Path | None
    key: Path | None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )


@dataclass(frozen=True)
class NatsAuth:
    """How a binary authenticates to NATS (a credentials file; user:password in HERALD_NATS_URL needs none of this)
    and the CA it checks a NATS server's certificate against."""

    creds: Path | None
    ca: Path | None

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for nats.connect. A server asking for TLS gets it for nats:// URLs too."""
        options: dict[str, Any] = {}
        if self.creds:
            options["user_credentials"] = str(self.creds)
        if self.ca:
            options["tls"] = ssl.create_default_context(cafile=self.ca)
        return options


def server_from_env(env: Mapping[str, str]) -> ServerTls | None:
    cert, key = _path(env, "HERALD_TLS_CERT_FILE"), _path(env, "HERALD_TLS_KEY_FILE")
    client_ca = _ca(env, "HERALD_TLS_CLIENT_CA_FILE")
    if not cert and not key:
        if client_ca:
            raise ValueError("HERALD_TLS_CLIENT_CA_FILE needs HERALD_TLS_CERT_FILE and HERALD_TLS_KEY_FILE")
        return None
    if not cert or not key:
        raise ValueError("HERALD_TLS_CERT_FILE and HERALD_TLS_KEY_FILE go together: set both or neither")
    tls = ServerTls(cert, key, client_ca)
    _check("HERALD_TLS_CERT_FILE / HERALD_TLS_KEY_FILE", "a PEM certificate and its key", tls.http_context)
    return tls


def client_from_env(env: Mapping[str, str]) -> ClientTls | None:
    ca = _ca(env, "HERALD_TLS_CA_FILE")
    cert, key = _path(env, "HERALD_TLS_CLIENT_CERT_FILE"), _path(env, "HERALD_TLS_CLIENT_KEY_FILE")
    if bool(cert) != bool(key):
        raise ValueError("HERALD_TLS_CLIENT_CERT_FILE and HERALD_TLS_CLIENT_KEY_FILE go together: set both or neither")
    if not ca:
        if cert:
            raise ValueError("HERALD_TLS_CLIENT_CERT_FILE needs HERALD_TLS_CA_FILE, the CA that signed the servers")
        return None
    if cert and key:
        _check(
            "HERALD_TLS_CLIENT_CERT_FILE / HERALD_TLS_CLIENT_KEY_FILE",
            "a PEM certificate and its key",
            lambda: ssl.create_default_context().load_cert_chain(cert, key),
        )
    return ClientTls(ca, cert, key)


def nats_from_env(env: Mapping[str, str]) -> NatsAuth:
    creds, ca = _path(env, "HERALD_NATS_CREDS_FILE"), _ca(env, "HERALD_NATS_CA_FILE")
    if creds:
        text = creds.read_text(errors="replace")
        if not all(marker in text for marker in CREDS_MARKERS):
            raise ValueError(f"HERALD_NATS_CREDS_FILE: {creds} is not a NATS credentials file (JWT and nkey seed)")
    return NatsAuth(creds, ca)


def grpc_channel(addr: str, tls: ClientTls | None) -> grpc.aio.Channel:
    """An asyncio channel to a herald binary: TLS when `tls` is set, else plaintext."""
    if tls is None:
        return grpc.aio.insecure_channel(addr)
    return grpc.aio.secure_channel(addr, tls.credentials())


def _path(env: Mapping[str, str], variable: str) -> Path | None:
    """The file a variable names, None when unset; an unreadable or missing file is a configuration error."""
    value = env.get(variable, "").strip()
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{variable}: no file at {value}")
    try:
        path.read_bytes()
    except OSError as e:
        raise ValueError(f"{variable}: cannot read {value}: {e.strerror}") from e
    return path


def _ca(env: Mapping[str, str], variable: str) -> Path | None:
    """The CA bundle a variable names, checked to hold PEM certificates."""
    path = _path(env, variable)
    if path:
        _check(variable, "PEM CA certificates", lambda: ssl.create_default_context(cafile=path))
    return path


def _check(variables: str, expected: str, load: Callable[[], object]) -> None:
    """Run `load`, which parses PEM files: what ssl refuses becomes a configuration error naming the variables."""
    try:
        load()
    except ssl.SSLError as e:
        raise ValueError(f"{variables}: expected {expected} ({e.reason or e})") from e
