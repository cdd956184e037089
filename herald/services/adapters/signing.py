"""Herald's HMAC-SHA256 signing, in one place.

Tokens the adapters hand out and take back signed (`Signer`): base64url(body) + "." + base64url(HMAC-SHA256 of
that part). The secret setting may list several keys, comma-separated: the first signs, all verify, so a key can
be rotated without invalidating what is out there. Used by inbox tokens and by e-mail's tracked links.

Webhook bodies (`webhook_signature`): `t=<unix seconds>,v1=<hex>`, v1 = HMAC-SHA256(secret, "<t>.<raw body>"), the
scheme Stripe uses, so receivers' existing verification code fits."""

import base64
import binascii
import hashlib
import hmac


class Unsigned(Exception):
    """Not a token any of the keys signed."""


class Malformed(Unsigned):
    """Not a token at all: no signature part, or not base64url."""


class Signer:
    def __init__(self, secrets: str) -> None:
        self._keys = [s.strip().encode() for s in secrets.split(",") if s.strip()]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def sign(self, body: bytes) -> str:
        encoded = _b64(body)
        return f"{encoded}.{_b64(_mac(self._keys[0], encoded))}"

    def verify(self, token: str) -> bytes:
        """The body of a token one of the keys signed."""
        encoded, _, signature = token.partition(".")
        try:
            given, body = _unb64(signature), _unb64(encoded)
        except (ValueError, binascii.Error):
            raise Malformed from None
        if not any(hmac.compare_digest(given, _mac(key, encoded)) for key in self._keys):
            raise Unsigned
        return body


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Herald-Signature header of a webhook POST; the timestamp lets receivers reject replays."""
    digest = hmac.digest(secret.encode(), f"{timestamp}.".encode() + body, "sha256").hex()
    return f"t={timestamp},v1={digest}"


def _mac(key: bytes, encoded: str) -> bytes:
    return hmac.new(key, encoded.encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
