"""The one error mapping: handlers raise these, the server interceptor turns them into rich gRPC statuses."""

import errno
from collections.abc import Mapping

import grpc
import nats.errors
import nats.js.errors
import sqlalchemy.exc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

# The database or the broker is down, slow or between leaders: the same call may well succeed later, so the caller
# is told UNAVAILABLE (retry). Whatever else they raise - a value the database refuses, a broken constraint, a
# payload over the broker's limit - fails again on every retry: that is a bug or a bad request, never "retry".
TRANSIENT: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
    nats.js.errors.NoStreamResponseError,
    ConnectionError,
    TimeoutError,
)


class HeraldError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    # Why, where the status alone does not tell an operator (a rate limit and load shedding are both
    # RESOURCE_EXHAUSTED): what metrics count the refusal under. "" = the status's name.
    cause: str = ""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> list[object]:
        return []

    def to_status(self) -> status_pb2.Status:
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        for detail in self.details():
            status.details.add().Pack(detail)
        return status


class InvalidArgument(HeraldError):
    """A request field is wrong; `fields` maps each bad field path to what is wrong with it."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, fields: Mapping[str, str]) -> None:
        self.fields = dict(fields)
        super().__init__("; ".join(f"{field}: {why}" for field, why in self.fields.items()))

    def details(self) -> list[object]:
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=field, description=why)
                    for field, why in self.fields.items()
                ]
            )
        ]


class NotFound(HeraldError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(HeraldError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(HeraldError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(HeraldError):
    code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(HeraldError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(HeraldError):
    code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(HeraldError):
    code = grpc.StatusCode.UNIMPLEMENTED


class ResourceExhausted(HeraldError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds

    def details(self) -> list[object]:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(self.retry_after_seconds * 1e9))
        return [error_details_pb2.RetryInfo(retry_delay=delay)]


class CannotStart(Exception):
    """The binary cannot serve as configured or connected (a broker too old, an address another process holds):
    it exits non-zero with this message, not a stack (herald/libs/runtime.py)."""


def cannot_listen(addr: str, error: OSError) -> CannotStart:
    """Why a binary cannot listen on `addr`, in the words an operator acts on."""
    if error.errno == errno.EADDRINUSE:
        return CannotStart(f"{addr} is already in use")
    return CannotStart(f"cannot listen on {addr}: {error.strerror or error}")
