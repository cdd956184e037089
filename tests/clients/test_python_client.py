"""herald.client's Send (clients/python): retried under one idempotency key, on a copy of the caller's request."""

from typing import Any

import grpc
import pytest
from herald.client import send
from herald.v1 import message_service_pb2 as msg


class _Refused(grpc.RpcError):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def trailing_metadata(self) -> tuple[()]:
        return ()


class _Intake:
    """Answers Send with the given errors first, then a message id; remembers every request and its metadata."""

    def __init__(self, *errors: grpc.StatusCode) -> None:
        self.errors = list(errors)
        self.calls: list[tuple[msg.SendRequest, Any]] = []

    def Send(self, request: msg.SendRequest, metadata: Any, timeout: float) -> msg.SendResponse:
        self.calls.append((request, metadata))
        if self.errors:
            raise _Refused(self.errors.pop(0))
        return msg.SendResponse(message_id="msg_1")


def test_a_send_retried_keeps_one_idempotency_key_and_leaves_the_callers_request_as_it_was() -> None:
    intake = _Intake(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
    request = msg.SendRequest(template_id="order-shipped")
    answer = send(intake, request, "hk_key", first_delay=0.01)  # type: ignore[arg-type]
    assert answer.message_id == "msg_1"
    keys = {sent.idempotency_key for sent, _ in intake.calls}
    assert len(intake.calls) == 3 and len(keys) == 1 and "" not in keys
    assert all(metadata == (("authorization", "Bearer hk_key"),) for _, metadata in intake.calls)
    assert request.idempotency_key == "", "the caller's request is untouched: sending it again is a new message"


def test_a_refusal_a_retry_cannot_help_is_raised_at_once() -> None:
    intake = _Intake(grpc.StatusCode.INVALID_ARGUMENT)
    with pytest.raises(grpc.RpcError) as refused:
        send(intake, msg.SendRequest(template_id="t", idempotency_key="k"), "hk_key")  # type: ignore[arg-type]
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(intake.calls) == 1
