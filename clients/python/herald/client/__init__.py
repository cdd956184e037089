"""Calling herald from Python: the credentials every call carries, and a Send retried the way herald asks.

    import grpc
    from herald.client import bearer, send
    from herald.v1 import message_service_pb2 as msg, message_service_pb2_grpc

    channel = grpc.secure_channel("herald:50051", grpc.ssl_channel_credentials())
    stub = message_service_pb2_grpc.MessageServiceStub(channel)
    sent = send(stub, msg.SendRequest(template_id="order-shipped", ...), api_key)

A retried Send is harmless only under one idempotency key: `send` sets one when the request has none and keeps it
for every attempt, so a Send whose answer was lost goes out once.
"""

import time
import uuid

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from herald.v1 import message_service_pb2, message_service_pb2_grpc

Metadata = tuple[tuple[str, str], ...]
# What herald answers when a retry may succeed: it could not queue the message (UNAVAILABLE), the call ran out of
# time, or the app is over its rate (RESOURCE_EXHAUSTED, with the delay to wait in a RetryInfo).
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


def bearer(token: str) -> Metadata:
    """The metadata of a call made with an app's API key, an inbox token, an operator's JWT or the admin token."""
    return (("authorization", f"Bearer {token}"),)


def send(
    stub: message_service_pb2_grpc.MessageServiceStub,
    request: message_service_pb2.SendRequest,
    token: str,
    *,
    attempts: int = 5,
    timeout: float = 10.0,
    first_delay: float = 0.5,
) -> message_service_pb2.SendResponse:
    """Send, retrying what RETRYABLE names up to `attempts` times: after herald's RetryInfo delay when it gives one,
    else after a delay that doubles from `first_delay`. Any other error, or the last one, is raised as it came."""
    if not request.idempotency_key:  # on a copy: the caller may send its request again, as a new message
        keyed = message_service_pb2.SendRequest()
        keyed.CopyFrom(request)
        keyed.idempotency_key = str(uuid.uuid4())
        request = keyed
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            response: message_service_pb2.SendResponse = stub.Send(request, metadata=bearer(token), timeout=timeout)
            return response
        except grpc.RpcError as error:
            if attempt == attempts or error.code() not in RETRYABLE:
                raise
            time.sleep(retry_delay(error) or delay)
            delay *= 2
    raise AssertionError("unreachable: the last attempt returns or raises")


def retry_delay(error: grpc.RpcError) -> float | None:
    """The wait herald asked for in a RetryInfo detail, if it gave one."""
    status = rpc_status.from_call(error)
    for detail in status.details if status else ():
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.ToTimedelta().total_seconds())
    return None
