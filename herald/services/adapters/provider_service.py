"""ProviderService: the provider accounts herald delivers through. Every call needs the admin token.

An account stores only the names of the environment variables that hold its credentials; no RPC ever sees a
secret. After a change every herald-adapters replica is told to re-read the accounts.
"""

import re
from collections.abc import Mapping

import grpc
from herald.v1 import common_pb2, provider_service_pb2_grpc
from herald.v1 import provider_service_pb2 as pb
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.libs import audit, categories
from herald.libs.callers import require_operator
from herald.libs.errors import AlreadyExists, InvalidArgument, NotFound
from herald.libs.store import Database
from herald.libs.timeutil import now, to_timestamp
from herald.services.adapters import tables
from herald.services.adapters.accounts import CREDENTIAL_PREFIX, Accounts
from herald.services.adapters.channels.base import Provider

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MUTABLE = (
    "endpoint",
    "settings",
    "credentials",
    "priority",
    "weight",
    "rate_limit_per_second",
    "timeout_seconds",
    "disabled",
    "unit_price_micros",
    "currency_code",
    "categories",
)
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class ProviderService(provider_service_pb2_grpc.ProviderServiceServicer):
    def __init__(self, db: Database, accounts: Accounts, plugins: Mapping[str, type[Provider]]) -> None:
        self._db = db
        self._accounts = accounts
        self._plugins = plugins

    async def CreateProviderAccount(
        self, request: pb.CreateProviderAccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProviderAccount:
        require_operator()
        account = request.account
        bad = self._problems(account, MUTABLE)
        if not _NAME.match(account.name):
            bad["account.name"] = "lower-case letters, digits and '-', starting with a letter, at most 63"
        if account.provider not in self._plugins:
            bad["account.provider"] = f"one of: {', '.join(sorted(self._plugins))}"
        if bad:
            raise InvalidArgument(bad)
        row = tables.ProviderAccount(
            name=account.name,
            provider=account.provider,
            channel=self._plugins[account.provider].channel,
            create_time=now(),
        )
        _apply(row, account, MUTABLE)
        async with self._db.session.begin() as session:
            if await session.get(tables.ProviderAccount, account.name) is not None:
                raise AlreadyExists(f"provider account '{account.name}' already exists")
            session.add(row)
        await self._changed()
        return _account_pb(row)

    async def GetProviderAccount(
        self, request: pb.GetProviderAccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProviderAccount:
        require_operator()
        async with self._db.session() as session:
            return self._as_seen(await _get(session, request.name))

    async def ListProviderAccounts(
        self, request: pb.ListProviderAccountsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProviderAccountsResponse:
        require_operator()
        query = select(tables.ProviderAccount).order_by(tables.ProviderAccount.name)
        if request.channel:
            query = query.where(tables.ProviderAccount.channel == request.channel)
        async with self._db.session() as session:
            return pb.ListProviderAccountsResponse(accounts=[self._as_seen(r) for r in await session.scalars(query)])

    async def UpdateProviderAccount(
        self, request: pb.UpdateProviderAccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProviderAccount:
        require_operator()
        paths = tuple(request.update_mask.paths) or MUTABLE
        bad = {f"update_mask.paths[{p}]": f"one of: {', '.join(MUTABLE)}" for p in paths if p not in MUTABLE}
        bad |= self._problems(request.account, paths)
        if bad:
            raise InvalidArgument(bad)
        async with self._db.session.begin() as session:
            row = await _get(session, request.account.name)
            before = _account_pb(row)
            _apply(row, request.account, paths)
            row.update_time = now()
        await self._changed()
        after = _account_pb(row)
        audit.changed(before=before, after=after)
        return after

    async def DeleteProviderAccount(
        self, request: pb.DeleteProviderAccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteProviderAccountResponse:
        require_operator()
        async with self._db.session.begin() as session:
            row = await _get(session, request.name)
            await session.delete(row)
        audit.changed(before=_account_pb(row))
        await self._changed()
        return pb.DeleteProviderAccountResponse(name=request.name)

    def _as_seen(self, row: tables.ProviderAccount) -> pb.ProviderAccount:
        """The account, with its circuit breaker as this process sees it."""
        account = _account_pb(row)
        route = self._accounts.named(row.name)
        if route is not None and route.breaker is not None:
            account.circuit_state = _CIRCUIT[route.breaker.state]
        return account

    async def _changed(self) -> None:
        await self._accounts.changed()

    @staticmethod
    def _problems(account: pb.ProviderAccount, paths: tuple[str, ...]) -> dict[str, str]:
        bad: dict[str, str] = {}
        checks = {
            "endpoint": (len(account.endpoint) <= 500, "at most 500 characters"),
            "settings": (all(_KEY.match(k) for k in account.settings), "keys are lower_snake_case"),
            "priority": (0 <= account.priority <= 100, "between 0 and 100"),
            "weight": (0 <= account.weight <= 1000, "between 0 and 1000"),
            "rate_limit_per_second": (0 <= account.rate_limit_per_second <= 100_000, "between 0 and 100000"),
            "timeout_seconds": (0 <= account.timeout_seconds <= 120, "between 0 and 120"),
            "unit_price_micros": (0 <= account.unit_price_micros <= 10**12, "between 0 and 10^12"),
            "currency_code": (
                bool(_CURRENCY.match(account.currency_code))
                or (not account.currency_code and not account.unit_price_micros),
                "an ISO 4217 code such as USD, required with a unit price",
            ),
            "categories": (
                all(c in categories.KNOWN for c in account.categories),
                "CATEGORY_CRITICAL, CATEGORY_NOTIFICATION or CATEGORY_MARKETING; none = every category",
            ),
        }
        for path, (ok, why) in checks.items():
            if path in paths and not ok:
                bad[f"account.{path}"] = why
        if "credentials" in paths:
            for key, variable in account.credentials.items():
                if not _KEY.match(key) or not _VARIABLE.match(variable) or not variable.startswith(CREDENTIAL_PREFIX):
                    bad[f"account.credentials[{key}]"] = (
                        f"the name of an environment variable starting with {CREDENTIAL_PREFIX}, never the secret"
                    )
        return bad


async def _get(session: AsyncSession, name: str) -> tables.ProviderAccount:
    row = await session.get(tables.ProviderAccount, name)
    if row is None:
        raise NotFound(f"provider account '{name[:64]}' not found")
    return row


def _apply(row: tables.ProviderAccount, account: pb.ProviderAccount, paths: tuple[str, ...]) -> None:
    values = {
        "endpoint": account.endpoint,
        "settings": dict(account.settings),
        "credentials": dict(account.credentials),
        "priority": account.priority,
        "weight": account.weight,
        "rate_limit_per_second": account.rate_limit_per_second,
        "timeout_seconds": account.timeout_seconds,
        "disabled": account.disabled,
        "unit_price_micros": account.unit_price_micros,
        "currency_code": account.currency_code,
        "categories": sorted(set(account.categories)),
    }
    for path in paths:
        setattr(row, path, values[path])
    row.update_time = now()


_CIRCUIT = {
    "closed": pb.CIRCUIT_STATE_CLOSED,
    "open": pb.CIRCUIT_STATE_OPEN,
    "half_open": pb.CIRCUIT_STATE_HALF_OPEN,
}


def _account_pb(row: tables.ProviderAccount) -> pb.ProviderAccount:
    return pb.ProviderAccount(
        name=row.name,
        provider=row.provider,
        channel=row.channel,
        endpoint=row.endpoint,
        settings=row.settings,
        credentials=row.credentials,
        priority=row.priority,
        weight=row.weight,
        rate_limit_per_second=row.rate_limit_per_second,
        timeout_seconds=row.timeout_seconds,
        disabled=row.disabled,
        unit_price_micros=row.unit_price_micros,
        currency_code=row.currency_code,
        categories=[common_pb2.Category.ValueType(c) for c in row.categories],
        create_time=to_timestamp(row.create_time),
        update_time=to_timestamp(row.update_time),
    )
