"""A binary's gRPC status as the caller sees it over HTTP: the same code (Connect names it, and gives it its HTTP
status), the same message and the same details (the `BadRequest` naming each wrong field, `RetryInfo`), and a
`RetryInfo` also as `Retry-After`, the header HTTP clients and proxies know."""

import math
from typing import Any

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from google.rpc import error_details_pb2, status_pb2
from protobuf.wkt import Any as AnyDetail

# grpc.StatusCode -> Connect's code: the same names, but for the spelling of CANCELLED.
CODES = {status: Code(status.name.lower()) for status in grpc.StatusCode if status.name not in ("OK", "CANCELLED")}
CODES[grpc.StatusCode.CANCELLED] = Code.CANCELED
STATUS_DETAILS = "grpc-status-details-bin"
RETRY_INFO = error_details_pb2.RetryInfo.DESCRIPTOR.full_name


def connect_error(error: grpc.aio.AioRpcError, binary: str, ctx: RequestContext[Any, Any]) -> ConnectError:
    """`binary`: the one that answered, or did not (a connection refused is unavailable, without the address)."""
    details: list[AnyDetail] = []
    message = error.details() or ""
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            details = [AnyDetail(type_url=d.type_url, value=d.value) for d in status.details]
            for detail in status.details:
                retry = error_details_pb2.RetryInfo()
                if detail.TypeName() == RETRY_INFO and detail.Unpack(retry):
                    seconds = retry.retry_delay.ToTimedelta().total_seconds()
                    ctx.response_headers["retry-after"] = str(max(1, math.ceil(seconds)))
            break
    else:
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            # Not an answer of herald's (those carry details) but the channel's: the binary is not reachable.
            message = f"herald-{binary} is unavailable; retry later"
    return ConnectError(CODES.get(error.code(), Code.UNKNOWN), message, details)
