"""Where heraldctl finds herald and its credentials, and how it reports what herald answered.

Endpoints and credentials come from flags or the environment: HERALD_INTAKE_ADDR,
HERALD_ROUTER_ADDR, HERALD_ADAPTERS_ADDR, HERALD_FEEDBACK_ADDR (the variables `make up` uses),
HERALD_ADMIN_TOKEN (else the file `make up` writes, .herald/admin-token) and
HERALD_API_KEY for the calls an app makes. Under TLS, HERALD_TLS_CA_FILE names the CA herald's
certificates are signed by, and HERALD_TLS_CLIENT_CERT_FILE / HERALD_TLS_CLIENT_KEY_FILE heraldctl's own
certificate where herald asks for one (mutual TLS), as for herald's binaries.
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

import grpc
import typer
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from herald.v1 import admin_service_pb2_grpc
from rich.console import Console

from herald.libs import ports
from herald.libs.tls import ClientTls, client_from_env

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]

# Exit codes: 0 done, 1 herald refused the request, 2 bad usage (typer), 3 herald unreachable.
REFUSED = 1
USAGE = 2
UNREACHABLE = 3
TIMEOUT = 15.0
# Where `make up` runs each service.
DEFAULT_INTAKE = ports.grpc_addr("intake")
DEFAULT_ROUTER = ports.grpc_addr("router")
DEFAULT_ADAPTERS = ports.grpc_addr("adapters")
DEFAULT_FEEDBACK = ports.grpc_addr("feedback")

err = Console(stderr=True)


@dataclass(frozen=True)
class Target:
    """heraldctl's context object (`ctx.obj`): where herald's services listen and the credentials to show them,
    settled by the root options before any command runs."""

    intake: str
    router: str
    adapters: str
    feedback: str
    # An operator's credential: a signed-in operator's token, or the admin token.
    operator_token: str
    api_key: str
    # None: plaintext, as `make up` serves.
    tls: ClientTls | None = None

    def admin(self) -> Metadata:
        if not self.operator_token:
            fail(
                "no operator credentials: set HERALD_TOKEN (or HERALD_TOKEN_FILE) to your sign-in token, or "
                "HERALD_ADMIN_TOKEN (`make up` writes it to .herald/admin-token)",
                2,
            )
        return (("authorization", f"Bearer {self.operator_token}"),)

    def app_or_admin(self) -> Metadata:
        """For calls either may make: the app's key when HERALD_API_KEY is set, else the admin token."""
        return self.app() if self.api_key else self.admin()

    def app(self) -> Metadata:
        if not self.api_key:
            fail("no API key: set HERALD_API_KEY to the key CreateApp returned", 2)
        return (("authorization", f"Bearer {self.api_key}"),)

    @contextmanager
    def channel(self, addr: str) -> Iterator[grpc.Channel]:
        tls = self.tls
        with grpc.insecure_channel(addr) if tls is None else grpc.secure_channel(addr, tls.credentials()) as ch:
            yield ch

    @contextmanager
    def admin_stub(self) -> Iterator[admin_service_pb2_grpc.AdminServiceStub]:
        with self.channel(self.intake) as ch:
            yield admin_service_pb2_grpc.AdminServiceStub(ch)


def endpoints(intake: str, router: str, adapters: str, feedback: str) -> Target:
    """Where herald's services listen (the endpoint options every command takes; an empty one falls back to its
    variable, then to `make up`'s address), with the credentials of the environment: an operator's token from
    HERALD_TOKEN or the file HERALD_TOKEN_FILE names (where a company's login tool leaves it), else the admin
    token."""
    env = os.environ
    token = env.get("HERALD_TOKEN", "").strip()
    if not token and (named := env.get("HERALD_TOKEN_FILE", "")):
        try:
            token = Path(named).read_text().strip()
        except OSError as e:
            fail(f"HERALD_TOKEN_FILE: cannot read {named}: {e.strerror}", 2)
    if not token:
        token = env.get("HERALD_ADMIN_TOKEN", "")
        admin_file = Path(env.get("HERALD_DATA_DIR", ".herald")) / "admin-token"
        if not token and admin_file.exists():
            token = admin_file.read_text().strip()
    return Target(
        intake=intake or env.get("HERALD_INTAKE_ADDR", DEFAULT_INTAKE),
        router=router or env.get("HERALD_ROUTER_ADDR", DEFAULT_ROUTER),
        adapters=adapters or env.get("HERALD_ADAPTERS_ADDR", DEFAULT_ADAPTERS),
        feedback=feedback or env.get("HERALD_FEEDBACK_ADDR", DEFAULT_FEEDBACK),
        operator_token=token,
        api_key=env.get("HERALD_API_KEY", ""),
    )


def trust(ca_file: str, cert_file: str, key_file: str) -> ClientTls | None:
    """TLS for every command's channels when a CA is given; checked before any call, like a binary's."""
    files = {
        "HERALD_TLS_CA_FILE": ca_file,
        "HERALD_TLS_CLIENT_CERT_FILE": cert_file,
        "HERALD_TLS_CLIENT_KEY_FILE": key_file,
    }
    try:
        return client_from_env(files)
    except ValueError as e:
        fail(str(e), USAGE)


def call(rpc: Callable[..., T], request: object, metadata: Metadata) -> T:
    """Make one RPC; on an error, report herald's answer and exit."""
    try:
        return rpc(request, metadata=metadata, timeout=TIMEOUT)
    except grpc.RpcError as e:
        report(e)
        raise


def report(error: grpc.RpcError) -> NoReturn:
    """Print herald's answer - the status, every bad field, the retry delay - and exit with its code."""
    code = error.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        fail(f"herald is unreachable ({code.name}): {error.details()}", UNREACHABLE)
    err.print(f"[red]{code.name}[/red]: {error.details()}")
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        bad, retry = error_details_pb2.BadRequest(), error_details_pb2.RetryInfo()
        if detail.Unpack(bad):
            for violation in bad.field_violations:
                err.print(f"  [yellow]{violation.field}[/yellow]: {violation.description}")
        elif detail.Unpack(retry):
            err.print(f"  retry in {retry.retry_delay.ToTimedelta().total_seconds():g}s")
    raise typer.Exit(REFUSED) from error


def fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error[/red]: {message}")
    raise typer.Exit(code)
