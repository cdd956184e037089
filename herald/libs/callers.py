"""Who is calling: every RPC of herald.v1 passes the Gate before its handler runs (herald/libs/grpc_server.py).
An operator's credentials - the admin token, or a JWT from the company's identity provider - are checked here
against herald/libs/roles.py's table, and the operator is the call's CURRENT_OPERATOR for the handler. An app's API
key or an inbox token passes through to the handler, which resolves it and keeps the app to its own data; so does
a call without credentials, which the handler refuses as before."""

import hmac
from contextvars import ContextVar

import grpc

from herald.libs.auth import KEY_PREFIX, bearer_token
from herald.libs.errors import PermissionDenied, Unauthenticated
from herald.libs.oidc import OidcVerifier
from herald.libs.roles import ADMIN, RULES, Operator

ADMIN_TOKEN_ACTOR = "admin-token"  # noqa: S105 - a name in the audit trail, not the token
# Inbox tokens (herald/services/adapters/inbox/inbox_tokens.py) are an app's credential for one user.
INBOX_TOKEN_PREFIX = "hit_"  # noqa: S105


# The operator making the current call; None when an app's key (or nothing) is the credential.
CURRENT_OPERATOR: ContextVar[Operator | None] = ContextVar("operator", default=None)


class Gate:
    def __init__(self, admin_token: str, oidc: OidcVerifier | None) -> None:
        self._admin_token = admin_token.encode()
        self._oidc = oidc

    async def admit(self, method: str, context: grpc.aio.ServicerContext) -> None:
        """Make the operator calling `method`, if an operator is, the call's CURRENT_OPERATOR, and refuse the call
        unless the table lets one of their roles make it (the audit trail then records who was refused)."""
        CURRENT_OPERATOR.set(None)
        rule = RULES.get(method)
        if rule is None:  # not herald's API: health, reflection
            return
        try:
            token = bearer_token(context)
        except Unauthenticated:
            return
        if self._admin_token and hmac.compare_digest(token.encode(), self._admin_token):
            caller = Operator(ADMIN_TOKEN_ACTOR, frozenset({ADMIN}))
        elif token.startswith((KEY_PREFIX, INBOX_TOKEN_PREFIX)):
            return
        elif self._oidc is not None:
            caller = await self._oidc.verify(token)
        else:
            return  # neither: the handler answers it as the unknown key it is
        CURRENT_OPERATOR.set(caller)
        if not caller.roles & rule.roles:
            if not rule.roles:
                raise PermissionDenied(f"{method} acts as an app: call it with the app's API key")
            needed = ", ".join(sorted(rule.roles))
            raise PermissionDenied(f"{caller.actor} may not call {method}: it needs one of the roles {needed}")


def operator() -> Operator | None:
    return CURRENT_OPERATOR.get()


def require_operator() -> Operator:
    """For RPCs only operators call: the gate has checked the caller's roles; anyone else is refused here."""
    caller = CURRENT_OPERATOR.get()
    if caller is None:
        raise Unauthenticated(
            "this call needs an operator's credentials: a signed-in operator's token or HERALD_ADMIN_TOKEN"
        )
    return caller
