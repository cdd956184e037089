"""Sortable ids are ULIDs after their prefix: Crockford base32 of the millisecond and 80 random bits, counting up
within a millisecond, so one process's ids sort in the order they were made."""

import os
import time

import pytest

from herald.libs import ids

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(ms: int, random: int) -> str:
    """The ULID spec's encoding, digit by digit."""
    value, digits = ms << 80 | random, ""
    for _ in range(26):
        value, digit = divmod(value, 32)
        digits = ALPHABET[digit] + digits
    return digits


@pytest.mark.parametrize("random", [0, 0x1234_5678_9ABC_DEF0_1234, (1 << 20) - 1, (5 << 60) | 0xFFFFF])
def test_ids_within_a_millisecond_count_up_from_one_random_value(monkeypatch: pytest.MonkeyPatch, random: int) -> None:
    """Each next id of the millisecond is the last plus one, a carry out of the low digits included."""
    ms = 1_796_673_159_893
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(time, "time_ns", lambda: ms * 1_000_000 + 123)
    monkeypatch.setattr(os, "urandom", lambda n: random.to_bytes(n))
    made = [ids.new_id("msg") for _ in range(3)]
    assert made == [f"msg_{ulid(ms, random + n)}" for n in range(3)]
    created = ids.created_at(made[0])
    assert created is not None and created.timestamp() == ms / 1000


def test_a_burst_of_ids_is_unique_and_sorts_in_the_order_made() -> None:
    made = [ids.new_id("msg") for _ in range(50_000)]
    assert made == sorted(made) and len(set(made)) == len(made)
