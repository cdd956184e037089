"""NATS in operator mode for tests: an operator, a system account and a JetStream-enabled account signed here, the
server configuration that trusts them, and a user's credentials file - what `nsc` makes in production
(docs/operations.md, "TLS"), made from the documented JWT format so herald's HERALD_NATS_CREDS_FILE path meets a
real server that checks signatures."""

import base64
import json
import os
import time
from pathlib import Path

import nkeys

UNLIMITED = -1
# An account has JetStream when its limits allow storage.
JETSTREAM_LIMITS = ("mem_storage", "disk_storage", "streams", "consumer")


def _keys(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(issuer: nkeys.KeyPair, subject: str, name: str, nats: dict[str, object]) -> str:
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    claims = {
        "jti": _b64(os.urandom(24)),
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    body = _b64(json.dumps(claims).encode())
    return f"{header}.{body}.{_b64(issuer.sign(f'{header}.{body}'.encode()))}"


def _account(operator: nkeys.KeyPair, name: str, jetstream: bool) -> tuple[nkeys.KeyPair, str]:
    """An account signed by `operator`, without limits; JetStream only where asked (never the system account)."""
    account = _keys(nkeys.PREFIX_BYTE_ACCOUNT)
    names = ("subs", "data", "payload", "imports", "exports", "conn", "leaf")
    limits = {key: UNLIMITED for key in names + (JETSTREAM_LIMITS if jetstream else ())}
    jwt = _jwt(operator, account.public_key.decode(), name, {"type": "account", "limits": limits})
    return account, jwt


def operator_mode(directory: Path) -> tuple[Path, Path]:
    """A nats-server configuration file trusting a new operator, and the credentials of a user of its account."""
    operator = _keys(nkeys.PREFIX_BYTE_OPERATOR)
    system, system_jwt = _account(operator, "SYS", jetstream=False)
    account, account_jwt = _account(operator, "HERALD", jetstream=True)
    operator_jwt = _jwt(
        operator,
        operator.public_key.decode(),
        "herald-test",
        {"type": "operator", "system_account": system.public_key.decode()},
    )
    user = _keys(nkeys.PREFIX_BYTE_USER)
    user_jwt = _jwt(
        account,
        user.public_key.decode(),
        "herald",
        {"type": "user", "subs": UNLIMITED, "data": UNLIMITED, "payload": UNLIMITED},
    )
    config = directory / "operator.conf"
    config.write_text(
        f"operator: {operator_jwt}\n"
        f"system_account: {system.public_key.decode()}\n"
        "resolver: MEMORY\n"
        "resolver_preload: {\n"
        f"  {system.public_key.decode()}: {system_jwt}\n"
        f"  {account.public_key.decode()}: {account_jwt}\n"
        "}\n"
    )
    creds = directory / "herald.creds"
    creds.write_text(
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n------END USER NKEY SEED------\n"
    )
    return config, creds
