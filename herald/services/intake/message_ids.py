"""Message ids that tell which app they were issued to, so that a message needs no row for its owner to cancel it.

A message without an idempotency key is stored nowhere but in JetStream (see docs/decisions.md). Its id is a
sortable id (herald/libs/ids.py) followed by a tag: a 40-bit keyed BLAKE2b (a MAC) of the id and the app's id under a
secret only intake holds. CancelMessage recomputes the tag for the calling app: another app's message, or an id
intake never issued, fails the check and is NOT_FOUND, as it would be without a row to find.

The secret is made by the first intake to start and kept in a KV bucket, so every replica, and every restart,
checks with the same one; nothing needs configuring.
"""

import contextlib
import hashlib
import hmac
import secrets

from nats.js.errors import KeyWrongLastSequenceError

from herald.libs.bus import Bus
from herald.libs.ids import crockford, new_id

BUCKET = "herald_intake"
ENTRY = "message-ids"  # holds the secret
# Crockford base32 digits of the tag: 40 bits, 8 characters. With "msg_" and the 26 of the ULID, an id is 38
# characters, within the 40 its columns hold.
TAG_BYTES = 5
TAG_CHARS = 8
ID_CHARS = len("msg_") + 26 + TAG_CHARS


class MessageIds:
    def __init__(self, secret: bytes) -> None:
        # Keyed once; each tag hashes on a copy (a keyed BLAKE2b made afresh costs twice as much).
        self._keyed = hashlib.blake2b(key=secret, digest_size=TAG_BYTES)

    @classmethod
    async def open(cls, bus: Bus) -> "MessageIds":
        kv = await bus.key_value(BUCKET)
        with contextlib.suppress(KeyWrongLastSequenceError):  # another intake made it first
            await kv.create(ENTRY, secrets.token_bytes(32))
        entry = await kv.get(ENTRY)
        assert entry.value, f"{BUCKET}/{ENTRY} is empty"
        return cls(entry.value)

    def new(self, app_id: str) -> str:
        base = new_id("msg")
        return base + self._tag(base, app_id)

    def issued_to(self, message_id: str, app_id: str) -> bool:
        """Whether intake issued `message_id` to the app `app_id`."""
        base, tag = message_id[:-TAG_CHARS], message_id[-TAG_CHARS:]
        # As bytes: compare_digest refuses a str that is not ASCII, and a caller may send any id.
        return len(message_id) == ID_CHARS and hmac.compare_digest(tag.encode(), self._tag(base, app_id).encode())

    def _tag(self, base: str, app_id: str) -> str:
        mac = self._keyed.copy()
        mac.update(f"{base} {app_id}".encode())
        return crockford(int.from_bytes(mac.digest()), TAG_CHARS)
