"""Every public RPC of herald.v1, read from the protos' descriptors, and which binary serves it: the gateway adds
no method by hand, so a new RPC in a proto is served over HTTP as soon as its binary serves it over gRPC."""

from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf import message_factory
from google.protobuf.descriptor import FileDescriptor, MethodDescriptor
from google.protobuf.message import Message
from herald.v1 import (
    admin_service_pb2,
    audit_service_pb2,
    dead_letter_service_pb2,
    directory_service_pb2,
    inbox_service_pb2,
    message_service_pb2,
    provider_service_pb2,
    routing_service_pb2,
    status_service_pb2,
    suppression_service_pb2,
    topic_service_pb2,
)

# Each public service's binary (shared/spec/contract.md's table, and each binary's main.py).
BINARY_OF: dict[FileDescriptor, str] = {
    message_service_pb2.DESCRIPTOR: "intake",
    admin_service_pb2.DESCRIPTOR: "intake",
    directory_service_pb2.DESCRIPTOR: "router",
    routing_service_pb2.DESCRIPTOR: "router",
    topic_service_pb2.DESCRIPTOR: "router",
    suppression_service_pb2.DESCRIPTOR: "router",
    inbox_service_pb2.DESCRIPTOR: "adapters",
    provider_service_pb2.DESCRIPTOR: "adapters",
    dead_letter_service_pb2.DESCRIPTOR: "adapters",
    status_service_pb2.DESCRIPTOR: "feedback",
    audit_service_pb2.DESCRIPTOR: "feedback",
}


@dataclass(frozen=True)
class Procedure:
    binary: str
    method: MethodDescriptor
    input: type[Message]
    output: type[Message]

    @property
    def path(self) -> str:
        """`/herald.v1.MessageService/Send`: the URL path under Connect and gRPC-Web, the method under gRPC."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"


def procedures() -> Iterator[Procedure]:
    for file, binary in BINARY_OF.items():
        for service in file.services_by_name.values():
            for method in service.methods:
                yield Procedure(
                    binary,
                    method,
                    message_factory.GetMessageClass(method.input_type),
                    message_factory.GetMessageClass(method.output_type),
                )
