"""What finance reads: each SMS sent through an account is charged the account's unit price in force at the time,
and the statistics add the charges up per provider and currency."""

import asyncio
import uuid
from datetime import timedelta

import grpc
from google.protobuf import field_mask_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as pb
from herald.v1 import status_service_pb2 as status

from herald.libs.timeutil import now, to_timestamp
from tests.adapters.channels.sms.fake_twilio import FakeTwilio
from tests.adapters.sms import PHONE, sms_template, twilio_account
from tests.helpers.client import Herald, Metadata, all_final, bad_fields, rpc_error


async def _costs(herald: Herald, app: Metadata, request: status.GetStatsRequest, sent: int) -> status.StatsRow:
    async with asyncio.timeout(10):
        while True:
            reply: status.GetStatsResponse = await herald.status.GetStats(request, metadata=app)
            rows = reply.rows
            if rows and rows[0].sent == sent:
                return rows[0]
            await asyncio.sleep(0.1)


async def test_each_sms_costs_the_unit_price_in_force_when_it_was_sent(herald: Herald, twilio: FakeTwilio) -> None:
    account = twilio_account(f"twilio-{uuid.uuid4().hex[:6]}", twilio)
    account.unit_price_micros, account.currency_code = 7900, "USD"
    await herald.providers.CreateProviderAccount(
        pb.CreateProviderAccountRequest(account=account), metadata=herald.admin
    )
    try:
        _, app = await herald.create_app(("sms",))
        template = await sms_template(herald)
        window = status.GetStatsRequest(
            start_time=to_timestamp(now()),
            end_time=to_timestamp(now() + timedelta(hours=1)),
            group_by=[status.STATS_DIMENSION_PROVIDER],
        )

        async def send(count: int) -> None:
            for n in range(count):
                request = msg.SendRequest(
                    template_id=template,
                    recipients=[msg.Recipient(addresses={"sms": PHONE})],
                    variables={"code": str(n)},
                )
                await herald.wait_message(app, await herald.send(app, request), all_final)

        await send(2)
        row = await _costs(herald, app, window, sent=2)
        assert row.provider == account.name
        assert [(c.currency_code, c.amount_micros) for c in row.costs] == [("USD", 2 * 7900)]

        account.unit_price_micros = 8500
        await herald.providers.UpdateProviderAccount(
            pb.UpdateProviderAccountRequest(
                account=account, update_mask=field_mask_pb2.FieldMask(paths=["unit_price_micros"])
            ),
            metadata=herald.admin,
        )
        await send(1)
        row = await _costs(herald, app, window, sent=3)
        assert [(c.currency_code, c.amount_micros) for c in row.costs] == [("USD", 2 * 7900 + 8500)]
    finally:
        await herald.providers.DeleteProviderAccount(
            pb.DeleteProviderAccountRequest(name=account.name), metadata=herald.admin
        )


async def test_a_unit_price_needs_its_currency(herald: Herald, twilio: FakeTwilio) -> None:
    account = twilio_account(f"twilio-{uuid.uuid4().hex[:6]}", twilio)
    account.unit_price_micros = 7900
    error = await rpc_error(
        herald.providers.CreateProviderAccount(pb.CreateProviderAccountRequest(account=account), metadata=herald.admin)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_fields(error)) == {"account.currency_code"}


async def test_a_currency_code_is_three_letters_with_or_without_a_price(herald: Herald, twilio: FakeTwilio) -> None:
    account = twilio_account(f"twilio-{uuid.uuid4().hex[:6]}", twilio)
    account.currency_code = "USDX"
    error = await rpc_error(
        herald.providers.CreateProviderAccount(pb.CreateProviderAccountRequest(account=account), metadata=herald.admin)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_fields(error)) == {"account.currency_code"}
