"""Inbox tokens: what an app's client on a device shows to read one user's inbox.

The app's backend, holding its API key, asks CreateInboxToken for a token for one of its users and hands it to
that user's device; the API key never reaches a device. A token is "hit_" + base64url(JSON {app, user, key,
exp}) + "." + base64url(HMAC-SHA256 of that part), keyed with HERALD_INBOX_TOKEN_SECRET. `key` is the SHA-256 of
the API key that minted it (the registry's name for that key, not the key), so a token works only while that key
does: disabling the app or rotating the key out ends its tokens too. The variable may list several secrets,
comma-separated: the first signs, all verify, so a secret can be rotated without logging devices out.
"""

import json
import time
from dataclasses import dataclass

from herald.libs.callers import INBOX_TOKEN_PREFIX
from herald.services.adapters.signing import Malformed, Signer, Unsigned

DEFAULT_TTL = 3600
MAX_TTL = 24 * 3600


class BadToken(Exception):
    pass


@dataclass(frozen=True)
class Grant:
    app_id: str
    user_id: str
    # The registry's hash of the API key that minted the token (libs.auth.key_hash).
    key_hash: str
    # Unix time.
    expires: int


class InboxTokens:
    def __init__(self, secrets: str) -> None:
        self._signer = Signer(secrets)

    @property
    def enabled(self) -> bool:
        return self._signer.enabled

    def mint(self, app_id: str, user_id: str, key_hash: str, ttl: int) -> tuple[str, int]:
        """A token for `user_id` of `app_id`, minted with the key of `key_hash`, and the Unix time it stops
        working."""
        expires = int(time.time()) + ttl
        claims = json.dumps({"app": app_id, "user": user_id, "key": key_hash, "exp": expires}, separators=(",", ":"))
        return f"{INBOX_TOKEN_PREFIX}{self._signer.sign(claims.encode())}", expires

    def verify(self, token: str) -> Grant:
        try:
            claims = json.loads(self._signer.verify(token.removeprefix(INBOX_TOKEN_PREFIX)))
        except Malformed:
            raise BadToken("malformed inbox token") from None
        except Unsigned:
            raise BadToken("invalid inbox token") from None
        if "key" not in claims:
            raise BadToken("this inbox token is of an older kind; ask the app for a new one")
        grant = Grant(str(claims["app"]), str(claims["user"]), str(claims["key"]), int(claims["exp"]))
        if grant.expires <= time.time():
            raise BadToken("the inbox token has expired; ask the app for a new one")
        return grant
