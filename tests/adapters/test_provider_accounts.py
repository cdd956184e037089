"""ProviderService: accounts are managed over gRPC, reference credentials by environment variable, never hold or
return a secret, and refuse bad input precisely."""

import uuid

import grpc
from herald.v1 import provider_service_pb2 as pb

from tests.conftest import PROVIDER_ENV
from tests.helpers.client import Herald, bad_fields, bearer, rpc_error


def _account(**overrides: object) -> pb.ProviderAccount:
    fields: dict[str, object] = {
        "name": f"twilio-{uuid.uuid4().hex[:8]}",
        "provider": "twilio",
        "endpoint": "http://127.0.0.1:9",
        "settings": {"account_sid": "AC" + "1" * 32, "from": "+15005550006"},
        "credentials": {"auth_token": "HERALD_PROVIDER_TEST_SECRET"},
        "priority": 1,
        "weight": 3,
        "rate_limit_per_second": 50,
        "disabled": True,
    }
    fields.update(overrides)
    return pb.ProviderAccount(**fields)  # type: ignore[arg-type]


async def test_create_get_list_update_delete(herald: Herald) -> None:
    created = await herald.providers.CreateProviderAccount(
        pb.CreateProviderAccountRequest(account=_account()), metadata=herald.admin
    )
    name = created.name
    assert created.channel == "sms" and created.weight == 3 and created.create_time.seconds > 0
    got = await herald.providers.GetProviderAccount(pb.GetProviderAccountRequest(name=name), metadata=herald.admin)
    assert got == created
    listed = await herald.providers.ListProviderAccounts(
        pb.ListProviderAccountsRequest(channel="sms"), metadata=herald.admin
    )
    assert name in [a.name for a in listed.accounts]
    update = pb.UpdateProviderAccountRequest(account=pb.ProviderAccount(name=name, weight=7))
    update.update_mask.paths.append("weight")
    updated = await herald.providers.UpdateProviderAccount(update, metadata=herald.admin)
    assert updated.weight == 7 and updated.priority == 1, "only the masked field changes"
    await herald.providers.DeleteProviderAccount(pb.DeleteProviderAccountRequest(name=name), metadata=herald.admin)
    error = await rpc_error(
        herald.providers.GetProviderAccount(pb.GetProviderAccountRequest(name=name), metadata=herald.admin)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_no_response_carries_a_secret(herald: Herald) -> None:
    created = await herald.providers.CreateProviderAccount(
        pb.CreateProviderAccountRequest(account=_account()), metadata=herald.admin
    )
    listed = await herald.providers.ListProviderAccounts(pb.ListProviderAccountsRequest(), metadata=herald.admin)
    secret = PROVIDER_ENV["HERALD_PROVIDER_TEST_SECRET"]
    assert secret not in str(created) and secret not in str(listed)
    assert created.credentials == {"auth_token": "HERALD_PROVIDER_TEST_SECRET"}
    await herald.providers.DeleteProviderAccount(
        pb.DeleteProviderAccountRequest(name=created.name), metadata=herald.admin
    )


async def test_bad_accounts_are_refused_field_by_field(herald: Herald) -> None:
    error = await rpc_error(
        herald.providers.CreateProviderAccount(
            pb.CreateProviderAccountRequest(
                account=_account(
                    name="Not A Name",
                    provider="pigeon",
                    credentials={"auth_token": "s3cr3t-value"},
                    priority=-1,
                )
            ),
            metadata=herald.admin,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = bad_fields(error)
    assert set(fields) == {"account.name", "account.provider", "account.credentials[auth_token]", "account.priority"}
    assert "twilio" in fields["account.provider"]
    # A credential must be a reference to HERALD_PROVIDER_*, so no account can read herald's own secrets.
    for variable in ("HERALD_ADMIN_TOKEN", "HERALD_WEBHOOK_SIGNING_SECRET"):
        error = await rpc_error(
            herald.providers.CreateProviderAccount(
                pb.CreateProviderAccountRequest(account=_account(credentials={"auth_token": variable})),
                metadata=herald.admin,
            )
        )
        assert "account.credentials[auth_token]" in bad_fields(error)


async def test_duplicates_missing_accounts_and_callers_without_the_admin_token(herald: Herald) -> None:
    account = _account()
    await herald.providers.CreateProviderAccount(
        pb.CreateProviderAccountRequest(account=account), metadata=herald.admin
    )
    again = await rpc_error(
        herald.providers.CreateProviderAccount(pb.CreateProviderAccountRequest(account=account), metadata=herald.admin)
    )
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS
    missing = await rpc_error(
        herald.providers.DeleteProviderAccount(pb.DeleteProviderAccountRequest(name="nobody"), metadata=herald.admin)
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    anonymous = await rpc_error(
        herald.providers.ListProviderAccounts(pb.ListProviderAccountsRequest(), metadata=bearer("wrong"))
    )
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED
    await herald.providers.DeleteProviderAccount(
        pb.DeleteProviderAccountRequest(name=account.name), metadata=herald.admin
    )
