"""A local SMTP submission relay, as RFC 6409/3207/4954 describe one: nothing but EHLO, STARTTLS, NOOP and
QUIT before STARTTLS, AUTH PLAIN or LOGIN required before MAIL and checked against one username and
password (535 5.7.8 otherwise), and a "250 2.0.0 Ok: queued as <id>" for each accepted message, which it
parses as MIME for the tests to inspect.

It can be told to answer MAIL, RCPT or DATA with a given reply instead of accepting (a 4xx deferral, a 5xx
refusal, as Gmail and Amazon SES word them), to wait before answering DATA, or to drop every session the
way a relay closes idle ones.
"""

import asyncio
import secrets
import ssl
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, ClassVar

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.adapters.channels.fake_provider import FakeProvider

# The login the tests' relay is set up with.
USERNAME = "herald"
PASSWORD = "relay-password"  # noqa: S105


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    # Whether the session was upgraded with STARTTLS before the message.
    tls: bool
    # The username the session authenticated as.
    login: str
    message: EmailMessage
    queue_id: str


@dataclass
class FakeSmtp(FakeProvider[Received]):
    """`delay` holds back the answer to DATA."""

    scheme: ClassVar[str] = "smtp"
    ca: trustme.CA
    username: str
    password: str
    # "MAIL" | "RCPT" | "DATA" -> the reply to give instead of accepting, e.g. "550 5.1.1 User unknown".
    replies: dict[str, str] = field(default_factory=dict)
    # Sessions opened so far (one per TCP connection).
    connections: int = 0
    _tls: ssl.SSLContext = field(init=False, repr=False)
    _sessions: list[SMTP] = field(default_factory=list, init=False, repr=False)
    _server: asyncio.Server | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(self._tls)

    @property
    def endpoint(self) -> str:
        """host:port, as an SMTP account's endpoint names the relay."""
        return f"127.0.0.1:{self.port}"

    async def _listen(self, port: int) -> int:
        self._server = await asyncio.get_running_loop().create_server(self._session, "127.0.0.1", port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self.drop_sessions()
            await self._server.wait_closed()
            self._server = None

    def drop_sessions(self) -> None:
        for session in self._sessions:
            if session.transport is not None:
                session.transport.close()
        self._sessions.clear()

    def _session(self) -> SMTP:
        self.connections += 1
        session = SMTP(
            self,
            hostname="relay.test",
            tls_context=self._tls,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=self._authenticate,
            loop=asyncio.get_running_loop(),
        )
        self._sessions.append(session)
        return session

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            mechanism in ("PLAIN", "LOGIN")
            and isinstance(auth_data, LoginPassword)
            and auth_data.login == self.username.encode()
            and auth_data.password == self.password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if "MAIL" in self.replies:
            return self.replies["MAIL"]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if "RCPT" in self.replies:
            return self.replies["RCPT"]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await self.stall()
        if "DATA" in self.replies:
            return self.replies["DATA"]
        raw = envelope.original_content or b""
        queue_id = secrets.token_hex(5).upper()
        self.received.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                tls=session.ssl is not None,
                login=session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else "",
                message=BytesParser(policy=policy.default).parsebytes(raw),
                queue_id=queue_id,
            )
        )
        return f"250 2.0.0 Ok: queued as {queue_id}"


def write_ca(ca: trustme.CA, directory: Path) -> Path:
    """The CA bundle an account's `tls_ca_file` points at, so the client trusts the fake's certificate."""
    path = directory / "relay-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path
