"""The provider accounts this process delivers through, ready to use: a plug-in instance and a circuit breaker
per account, and its rate limit (paced cluster-wide by the deliverer).

Reloaded from adapters_provider_accounts when ProviderService announces a change (every replica hears it) and
every RELOAD_SECONDS in case a notice was missed. An account whose configuration did not change keeps its
plug-in instance (and so its cached provider tokens) and its breaker.
"""

import asyncio
import os
import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points

import aiohttp
import structlog
from sqlalchemy import select

from herald.libs import categories, subjects
from herald.libs.bus.interfaces import Notices
from herald.libs.store import Database
from herald.services.adapters import tables
from herald.services.adapters.breaker import CircuitBreaker
from herald.services.adapters.channels.base import Account, DeliveryError, Failure, Provider
from herald.services.adapters.channels.webhook import builtin_account
from herald.services.adapters.settings import AdaptersSettings

log = structlog.get_logger()

PLUGIN_GROUP = "herald.providers"
# Accounts may only reference these variables, so an account can never be pointed at herald's own secrets.
CREDENTIAL_PREFIX = "HERALD_PROVIDER_"
RELOAD_SECONDS = 30.0
DEFAULT_TIMEOUT = 10.0


def plugins() -> dict[str, type[Provider]]:
    """Every provider plug-in registered under the `herald.providers` entry-point group, by name."""
    return {entry.name: entry.load() for entry in entry_points(group=PLUGIN_GROUP)}


@dataclass
class Route:
    """One account, ready: where a delivery goes when this account is chosen."""

    account: Account
    provider: Provider
    priority: int
    weight: int
    # None for providers without a shared endpoint (Provider.shared_endpoint).
    breaker: CircuitBreaker | None
    # Calls per second this account may take from all adapters processes together; 0 = no limit.
    rate: float = 0.0
    # The categories it may carry; empty = every category.
    categories: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Price:
    """What one send through an account costs, in millionths of the currency."""

    micros: int = 0
    currency_code: str = ""


class Accounts:
    def __init__(
        self,
        db: Database,
        bus: Notices,
        http: aiohttp.ClientSession,
        settings: AdaptersSettings,
        registered: Mapping[str, type[Provider]],
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self._db = db
        self._bus = bus
        self._http = http
        self._settings = settings
        self._plugins = registered
        self._environ = environ
        self._routes: dict[str, Route] = {}
        self._configs: dict[str, tuple[object, ...]] = {}
        self._prices: dict[str, Price] = {}
        # Signs this process's change notices, so it does not reload for its own.
        self.origin = secrets.token_bytes(8)
        self._lock = asyncio.Lock()

    async def reload(self) -> None:
        async with self._db.session() as session:
            rows = list(await session.scalars(select(tables.ProviderAccount)))
        async with self._lock:
            configs = {row.name: _config(row) for row in rows if not row.disabled and row.provider in self._plugins}
            routes = {name: self._routes[name] for name, c in configs.items() if self._configs.get(name) == c}
            for row in rows:
                if row.name in configs and row.name not in routes:
                    routes[row.name] = self._route(row)
            if "webhook" in self._plugins and not any(r.account.provider == "webhook" for r in routes.values()):
                account = builtin_account(self._settings)
                routes.setdefault(account.name, self._routes.get(account.name) or self._builtin(account))
            stale = [r for name, r in self._routes.items() if routes.get(name) is not r]
            self._routes, self._configs = routes, configs
            self._prices = {row.name: Price(row.unit_price_micros, row.currency_code) for row in rows}
        for route in stale:
            await route.provider.close()

    async def refresh_forever(self) -> None:
        """Reload when a replica's ProviderService announces a change (not this process's own: it reloaded before
        announcing), and every RELOAD_SECONDS in case a notice was missed."""
        async with self._bus.notices(subjects.PROVIDERS_CHANGED) as changes:
            while True:
                try:
                    if await asyncio.wait_for(changes.get(), RELOAD_SECONDS) == self.origin:
                        continue
                except TimeoutError:
                    pass
                try:
                    await self.reload()
                except Exception:  # the database is briefly away: keep the accounts we have
                    log.exception("could not reload provider accounts")

    async def changed(self) -> None:
        """After a change to the accounts: use it here at once, and tell every other replica."""
        await self.reload()
        await self._bus.announce(subjects.PROVIDERS_CHANGED, self.origin)

    async def close(self) -> None:
        for route in self._routes.values():
            await route.provider.close()

    def named(self, name: str) -> Route | None:
        return self._routes.get(name)

    def price(self, name: str) -> Price:
        """The account's unit price now; a price changes the route of no delivery, so it is kept apart."""
        return self._prices.get(name, Price())

    def choose(self, channel: str, address: str, category: int) -> Route:
        """The account for the next call among those allowed the category: the best priority with a closed (or
        probing) circuit, by weight among equals. Raises a retryable DeliveryError when every account's circuit is
        open, a permanent one when the channel has no account for the category at all."""
        candidates = [
            r
            for r in self._routes.values()
            if r.provider.channel == channel
            and (not r.categories or category in r.categories)
            and r.provider.accepts(address)
        ]
        if not candidates:
            reason = f"no {channel} provider account is configured"
            if any(r.provider.channel == channel for r in self._routes.values()):
                reason = f"no {channel} provider account may carry {categories.name(category)} messages"
            raise DeliveryError(reason, Failure.PERMANENT)
        for priority in sorted({r.priority for r in candidates}):
            group = [r for r in candidates if r.priority == priority and (not r.breaker or r.breaker.state != "open")]
            while group:
                route = group[0] if len(group) == 1 else random.choices(group, weights=[r.weight for r in group])[0]
                if not route.breaker or route.breaker.try_acquire():
                    return route
                group.remove(route)
        names = ", ".join(sorted(r.account.name for r in candidates))
        raise DeliveryError(f"every {channel} provider account is failing (circuit open: {names})", Failure.RETRYABLE)

    def _route(self, row: tables.ProviderAccount) -> Route:
        secrets = {
            key: self._environ.get(variable, "")
            for key, variable in row.credentials.items()
            if variable.startswith(CREDENTIAL_PREFIX)
        }
        account = Account(
            name=row.name,
            provider=row.provider,
            endpoint=row.endpoint,
            settings=dict(row.settings),
            secrets=secrets,
            timeout=row.timeout_seconds or DEFAULT_TIMEOUT,
        )
        route = self._ready(account, row.priority, row.weight or 1, row.rate_limit_per_second)
        route.categories = frozenset(row.categories)
        return route

    def _builtin(self, account: Account) -> Route:
        return self._ready(account, priority=0, weight=1, rate=0.0)

    def _ready(self, account: Account, priority: int, weight: int, rate: float) -> Route:
        plugin = self._plugins[account.provider]
        return Route(
            account=account,
            provider=plugin(account, self._http),
            priority=priority,
            weight=weight,
            breaker=CircuitBreaker() if plugin.shared_endpoint else None,
            rate=rate,
        )


def _config(row: tables.ProviderAccount) -> tuple[object, ...]:
    return (
        row.provider,
        row.endpoint,
        sorted(row.settings.items()),
        sorted(row.credentials.items()),
        row.priority,
        row.weight,
        row.rate_limit_per_second,
        row.timeout_seconds,
        sorted(row.categories),
    )
