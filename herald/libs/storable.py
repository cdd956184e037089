"""Text the databases can store. PostgreSQL's text columns refuse the NUL character, so a request carrying one
would fail in whichever stage first writes it - and fail again on every redelivery. The edges refuse it instead,
naming the field."""

from google.protobuf.message import Message

# The largest integer a BIGINT column holds (and a JetStream sequence in practice): a uint64 field past it is
# refused where it comes in.
MAX_INTEGER = 2**63 - 1


def nul_refusals(message: Message, prefix: str = "", encoded: bytes | None = None) -> dict[str, str]:
    """Field path -> why, for every string in `message` that holds a NUL: what an edge adds to its refusals.

    A string's NUL is a zero byte in the message's encoding (`encoded`, if the caller has it), so a message whose
    encoding has none needs no walk (zero bytes stand for other things too - an explicit 0, an empty string - and
    those are walked)."""
    if b"\x00" not in (message.SerializeToString() if encoded is None else encoded):
        return {}
    return dict.fromkeys(_nul_fields(message, prefix), "must not contain the NUL character")


def _nul_fields(message: Message, prefix: str) -> list[str]:
    """The paths of every string in `message` (nested messages, lists and maps included) that holds a NUL."""
    found: list[str] = []
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                entry = f"{path}[{_printable(str(key)[:40])}]"
                if "\x00" in str(key) or (isinstance(item, str) and "\x00" in item):
                    found.append(entry)
                elif isinstance(item, Message):
                    found += _nul_fields(item, f"{entry}.")
        elif field.is_repeated:
            for i, item in enumerate(value):
                if isinstance(item, Message):
                    found += _nul_fields(item, f"{path}[{i}].")
                elif isinstance(item, str) and "\x00" in item:
                    found.append(f"{path}[{i}]")
        elif isinstance(value, Message):
            found += _nul_fields(value, f"{path}.")
        elif isinstance(value, str) and "\x00" in value:
            found.append(path)
    return found


def _printable(name: str) -> str:
    return name.replace("\x00", "\\x00")
