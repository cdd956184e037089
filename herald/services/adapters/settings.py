"""herald-adapters' own settings (the shared ones: herald/libs/config.py): the secrets only this binary holds."""

from collections.abc import Mapping
from dataclasses import dataclass

from herald.v1 import common_pb2

from herald.libs import categories, config, ports


@dataclass(frozen=True)
class AdaptersSettings:
    # Private or loopback hosts that webhooks may reach all the same (the SSRF guard's exceptions).
    webhook_allowed_hosts: frozenset[str]
    # Signs every webhook (herald/services/adapters/signing.py); required: an unsigned webhook could be forged.
    webhook_signing_secret: str
    pipelines: tuple[common_pb2.Category.ValueType, ...]
    # Per category, the delays in seconds before each retry of a failed delivery; their number is the number
    # of retries. HERALD_RETRY_BACKOFF_<CATEGORY>="1,2,4" overrides categories.RETRY_BACKOFF.
    retry_backoff: dict[common_pb2.Category.ValueType, tuple[float, ...]]
    # Where herald-adapters listens (HTTP) for delivery receipts that providers post.
    receipts_addr: str
    # Keys for the inbox tokens devices read their user's inbox with (comma-separated: the first signs, all
    # verify); "" = no inbox tokens, only app API keys.
    inbox_token_secret: str
    # The public address of herald-adapters' HTTP endpoint (HERALD_RECEIPTS_ADDR behind your ingress), for the
    # tracked links, open pixels and unsubscribe links of e-mail, and the keys that sign tracked links
    # (comma-separated: the first signs, all verify); tracking is off while either is "".
    tracking_url: str
    tracking_secret: str
    # How many days a tracked link or open pixel works, at most the app's content retention.
    tracking_ttl_days: int
    # Keys that sign herald's one-click unsubscribe links (comma-separated: the first signs, all verify), served at
    # tracking_url; herald's unsubscribe endpoint is off while either is "" (marketing mail then needs an account's
    # own unsubscribe_url).
    unsubscribe_secret: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "AdaptersSettings":
        secret = env.get("HERALD_WEBHOOK_SIGNING_SECRET", "")
        if not secret:
            raise ValueError(f"HERALD_WEBHOOK_SIGNING_SECRET: expected a secret to sign webhooks with, got {secret!r}")
        return cls(
            webhook_allowed_hosts=config.allowed_hosts(env),
            webhook_signing_secret=secret,
            pipelines=config.pipelines(env),
            retry_backoff={
                category: config.delays(env, f"HERALD_RETRY_BACKOFF_{name.upper()}")
                or categories.RETRY_BACKOFF[category]
                for name, category in categories.BY_NAME.items()
            },
            receipts_addr=env.get("HERALD_RECEIPTS_ADDR") or f"127.0.0.1:{ports.RECEIPTS}",
            inbox_token_secret=env.get("HERALD_INBOX_TOKEN_SECRET", ""),
            tracking_url=env.get("HERALD_TRACKING_URL", ""),
            tracking_secret=env.get("HERALD_TRACKING_SECRET", ""),
            tracking_ttl_days=config.number(env, "HERALD_TRACKING_TTL_DAYS", "30", int, 1),
            unsubscribe_secret=env.get("HERALD_UNSUBSCRIBE_SECRET", ""),
        )
