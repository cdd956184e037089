"""How the gateway reads request messages: proto3 JSON and binary, with google.protobuf's own parser. A JSON body
that does not fit the message - a field of the wrong type, a misspelt one - is invalid_argument with a
google.rpc.BadRequest naming the field, as the binaries name theirs; unknown fields are refused rather than
dropped, so a typo is not a silently ignored option."""

import re

from connectrpc.code import Code
from connectrpc.codec import Codec
from connectrpc.compat import google_protobuf_binary_codec
from connectrpc.errors import ConnectError
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from protobuf.wkt import Any

# json_format says where it failed as nested "Failed to parse <field> field: ..." clauses, or names the unknown
# field: 'Message type "herald.v1.SendRequest" has no field named "x" at "SendRequest.recipients"'.
_FAILED_FIELD = re.compile(r"Failed to parse (\w+) field")
_UNKNOWN_FIELD = re.compile(r'has no field named "([^"]+)" at "\w+(?:\.([\w.\[\]]+))?"')


def bad_field(error: json_format.ParseError) -> str:
    text = str(error)
    if unknown := _UNKNOWN_FIELD.search(text):
        name, within = unknown.groups()
        return f"{within}.{name}" if within else name
    return ".".join(_FAILED_FIELD.findall(text))


class JsonCodec:
    def name(self) -> str:
        return "json"

    def encode(self, message: Message) -> bytes:
        return json_format.MessageToJson(message, indent=None).encode()

    def decode(self, data: bytes | bytearray, message_class: type[Message]) -> Message:
        message = message_class()
        try:
            json_format.Parse(bytes(data), message)
        except json_format.ParseError as e:
            field = bad_field(e)
            violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=str(e))
            detail = error_details_pb2.BadRequest(field_violations=[violation])
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                f"{field or 'body'}: {e}",
                [Any(type_url=f"type.googleapis.com/{detail.DESCRIPTOR.full_name}", value=detail.SerializeToString())],
            ) from None
        return message


def codecs() -> list[Codec]:
    return [google_protobuf_binary_codec(), JsonCodec()]
