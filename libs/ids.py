"""Sortable ids: a ULID after a short type prefix ("msg_01JD3..."), so ids order by creation time.

Made here rather than by a ULID library because intake makes one for every message it accepts, thousands a
second: base64's C base32 encoder and one table translation cost a fifth of the library's way. Within one
millisecond the random part counts up (the ULID spec's monotonic mode), so one process's ids keep their order."""

import base64
import os
import time

# RFC 4648's base32 alphabet -> Crockford's, which ULIDs use.
_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")
_RANDOM_BITS = 80
_last_ms = 0
_last_random = 0


def new_id(prefix: str) -> str:
    global _last_ms, _last_random
    ms = time.time_ns() // 1_000_000
    if ms <= _last_ms and _last_random < (1 << _RANDOM_BITS) - 1:
        ms, random = _last_ms, _last_random + 1
    else:
        random = int.from_bytes(os.urandom(10))
    _last_ms, _last_random = ms, random
    # 26 base32 digits hold 130 bits: the 128 of the ULID after two zero bits. Shifted into 17 bytes (136 bits),
    # base32 gives those 26 digits, then two for the 6 bits of padding (and "====").
    return f"{prefix}_{crockford(((ms << _RANDOM_BITS | random) << 6).to_bytes(17))[:26]}"


def crockford(data: bytes) -> str:
    """`data` in Crockford's base32, as ULIDs write it (with RFC 4648 padding when it is not a multiple of 5 bytes)."""
    return base64.b32encode(data).translate(_CROCKFORD).decode()
