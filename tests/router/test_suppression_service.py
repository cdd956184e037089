"""The suppression list as operators and support use it, through the mesh: heraldctl adds, lists and removes an
address (and a delivery to it is SUPPRESSED meanwhile), refusals name the field or say what is missing, and provider
accounts are reserved for categories from heraldctl too."""

import json
import uuid

import grpc
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import suppression_service_pb2 as pb

from tests.conftest import Run
from tests.helpers.client import Herald, bad_fields, rpc_error
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


async def test_heraldctl_adds_lists_and_removes_an_address_and_routing_follows(
    heraldctl: Run, herald: Herald, sink: WebhookSink
) -> None:
    hook = sink.url(f"/suppressed-{uuid.uuid4().hex[:8]}")
    added = heraldctl("suppressions", "add", "webhook", hook, "--detail", "the customer asked", "--json").stdout
    assert json.loads(added)["reason"] == "SUPPRESSION_REASON_MANUAL"
    listed = json.loads(heraldctl("suppressions", "list", "--channel", "webhook", "--address", hook, "--json").stdout)
    [entry] = listed["suppressions"]
    assert entry["source"] == "operator:admin-token" and entry["detail"] == "the customer asked"
    assert hook in heraldctl("suppressions", "list", "--reason", "manual").stdout

    recipient = msg.Recipient(addresses={"webhook": hook})
    [delivery] = (await herald.send_and_wait(recipient))[2].deliveries
    assert delivery.state == S.DELIVERY_STATE_SUPPRESSED and "an operator added it" in delivery.reason

    assert "no longer suppressed" in heraldctl("suppressions", "remove", "webhook", hook).stdout
    [delivery] = (await herald.send_and_wait(recipient))[2].deliveries
    assert delivery.state == S.DELIVERY_STATE_SENT
    assert "not suppressed" in heraldctl("suppressions", "remove", "webhook", hook, code=1).output


async def test_bad_entries_are_refused_with_their_fields(herald: Herald) -> None:
    bad = pb.Suppression(channel="pigeon", address="", category=common_pb2.Category.ValueType(9))
    error = await rpc_error(
        herald.suppressions.CreateSuppression(pb.CreateSuppressionRequest(suppression=bad), metadata=herald.admin)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_fields(error)) == {"suppression.channel", "suppression.address", "suppression.category"}
    error = await rpc_error(
        herald.suppressions.ListSuppressions(pb.ListSuppressionsRequest(page_token="nope"), metadata=herald.admin)
    )
    assert set(bad_fields(error)) == {"page_token"}


async def test_the_list_pages_newest_first(herald: Herald) -> None:
    run = uuid.uuid4().hex[:8]
    addresses = [f"page-{run}-{n}@example.org" for n in range(5)]
    for address in addresses:
        entry = pb.Suppression(channel="email", address=address)
        await herald.suppressions.CreateSuppression(
            pb.CreateSuppressionRequest(suppression=entry), metadata=herald.admin
        )
    seen: list[str] = []
    token = ""
    while True:
        page = await herald.suppressions.ListSuppressions(
            pb.ListSuppressionsRequest(channel="email", page_size=2, page_token=token), metadata=herald.admin
        )
        seen += [s.address for s in page.suppressions if s.address.startswith(f"page-{run}")]
        if not (token := page.next_page_token):
            break
    assert seen == addresses[::-1]


def test_heraldctl_reserves_a_provider_account_for_critical(heraldctl: Run) -> None:
    name = f"twilio-otp-{uuid.uuid4().hex[:8]}"
    heraldctl(
        "providers", "create", name, "--provider", "twilio", "--endpoint", "http://127.0.0.1:9",
        "--setting", "account_sid=AC" + "1" * 32, "--setting", "from=+15005550006",
        "--credential", "auth_token=HERALD_PROVIDER_TEST_SECRET", "--category", "critical", "--disabled",
    )  # fmt: skip
    try:
        got = json.loads(heraldctl("providers", "get", name, "--json").stdout)
        assert got["categories"] == ["CATEGORY_CRITICAL"]
        heraldctl("providers", "update", name, "--every-category")
        assert json.loads(heraldctl("providers", "get", name, "--json").stdout)["categories"] == []
        assert "unknown category" in heraldctl("providers", "update", name, "--category", "urgent", code=2).output
    finally:
        heraldctl("providers", "delete", name)
