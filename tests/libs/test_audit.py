"""What an audit record keeps of a request: secrets redacted wherever they appear, addresses masked, and a record
even of a request JSON cannot represent (which the call refused)."""

from typing import Any

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import directory_service_pb2 as directory
from herald.v1 import provider_service_pb2 as providers

from herald.libs.audit import REDACTED, redacted


def _recorded(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(redacted(message))


def test_secrets_are_redacted_and_addresses_masked() -> None:
    key = admin.CreateAppResponse(app=admin.App(app_id="app_1", name="shop"), api_key="hk_secret")
    assert _recorded(key)["api_key"] == REDACTED and _recorded(key)["app"]["name"] == "shop"
    account = providers.ProviderAccount(name="twilio-main", credentials={"auth_token": "HERALD_PROVIDER_TOKEN"})
    assert _recorded(account)["credentials"] == {"auth_token": REDACTED}
    user = directory.User(
        user_id="u1", addresses={"email": "alice@example.com", "sms": "+8613800001234", "apns": "a1b2c3d4e5f6"}
    )
    addresses = _recorded(user)["addresses"]
    assert addresses["email"] == "a***@example.com" and addresses["apns"] == REDACTED
    assert addresses["sms"].endswith("******1234") and "13800001234" not in addresses["sms"]


def test_a_request_json_cannot_hold_is_recorded_as_such() -> None:
    malformed = admin.RotateAppKeyRequest(app_id="app_1", grace_period=Duration(seconds=5, nanos=-1))
    assert "unrepresentable" in _recorded(malformed)
