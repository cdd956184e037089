"""Server reflection as grpc.reflection.v1 (what current grpcurl and Postman ask first) as well as v1alpha.

grpcio-reflection ships only v1alpha. v1 is the same service and messages in another package, so the v1alpha
servicer answers both, and a copy of its file descriptor renamed to v1 lets clients describe v1 too.
"""

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, text_format
from grpc_reflection.v1alpha import reflection, reflection_pb2

from herald.libs.grpc_server import GenericOnly

V1 = "grpc.reflection.v1.ServerReflection"


def _v1_file() -> bytes:
    v1alpha = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(v1alpha)
    v1 = descriptor_pb2.FileDescriptorProto()
    text_format.Parse(text_format.MessageToString(v1alpha).replace("v1alpha", "v1"), v1)
    v1.ClearField("options")
    return v1.SerializeToString()


descriptor_pool.Default().AddSerializedFile(_v1_file())


def enable(server: GenericOnly, services: list[str]) -> None:
    """Reflect `services`, the reflection services themselves included, over both versions: one asyncio servicer
    answers both names."""
    reflected = [*services, reflection.SERVICE_NAME, V1]
    info = grpc.stream_stream_rpc_method_handler(
        reflection.aio.ReflectionServicer(reflected).ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    handlers = {"ServerReflectionInfo": info}
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(name, handlers) for name in (reflection.SERVICE_NAME, V1)]
    )
