"""Sortable ids: a ULID after a short type prefix ("msg_01JD3..."), so ids order by creation time.

Made here rather than by a ULID library because intake makes one for every message it accepts, thousands a
second, and the library's encoding was a tenth of intake's CPU. Within one millisecond the random part counts up
(the ULID spec's monotonic mode), so one process's ids keep their order."""

import os
import re
import time
from datetime import UTC, datetime
from functools import cache, lru_cache

# A key a caller chooses (a template id, a topic key) and what it may be.
CHOSEN_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CHOSEN_KEY_RULE = "1-64 of a-z, 0-9, '-', '_', starting with a letter or digit"
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32, as ULIDs write it
# Every 10-bit value as its two digits: a ULID's 26 digits are 13 lookups.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_DIGITS = {digit: value for value, digit in enumerate(_ALPHABET)}
_RANDOM_BITS = 80
_last_ms = 0
_last_random = 0


def new_id(prefix: str) -> str:
    global _last_ms, _last_random
    ms = time.time_ns() // 1_000_000
    if ms <= _last_ms and _last_random < (1 << _RANDOM_BITS) - 1:
        ms, random = _last_ms, _last_random + 1
    else:
        random = int.from_bytes(os.urandom(_RANDOM_BITS // 8))
    _last_ms, _last_random = ms, random
    low = random & 0xFFFFF
    return f"{prefix}_{_leading_digits(ms, random >> 20)}{_PAIRS[low >> 10]}{_PAIRS[low & 1023]}"


@lru_cache(maxsize=4)
def _leading_digits(ms: int, high: int) -> str:
    """A ULID's first 22 digits: its millisecond and the high 60 bits of its random part, the same for the ids
    made within a millisecond (which count up from one random value) until the low 20 bits carry."""
    return crockford(ms, 10) + crockford(high, 12)


def created_at(an_id: str) -> datetime | None:
    """When new_id made `an_id` (its first ten digits after the prefix count milliseconds); None if it is not
    one of those ids."""
    digits = an_id.partition("_")[2][:10]
    if len(digits) != 10 or not set(digits) <= _DIGITS.keys():
        return None
    ms = 0
    for digit in digits:
        ms = ms << 5 | _DIGITS[digit]
    return datetime.fromtimestamp(ms / 1000, UTC)


def crockford(value: int, digits: int) -> str:
    """The low 5 x `digits` bits of `value` as `digits` Crockford base32 digits (an even number of them)."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _shifts(digits)])


@cache
def _shifts(digits: int) -> range:
    return range(5 * digits - 10, -1, -10)


def delivery_id(message_id: str, position: int, channel_index: int, channels: int) -> str:
    """The delivery of the recipient at `position` (counted over the whole message, a part's offset included) on
    the message's `channel_index`-th channel: fixed by the message alone, so every replay of a message - and
    feedback, marking the deliveries of one a stage gave up on - derives the same ids."""
    return f"{message_id}.{position * channels + channel_index}"
