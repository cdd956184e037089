"""An app's status webhook as intake publishes it and the adapters read it: one key per app in the NATS KV bucket
BUCKET, so the adapters find it without reading intake's tables, and a change reaches every adapters process
within CACHE_SECONDS."""

import json
from dataclasses import dataclass

BUCKET = "herald_status_webhooks"
# How long an adapters process trusts what it read of an app's webhook.
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Secret:
    # "whsec_" + base64 of the key, as Standard Webhooks writes a secret.
    value: str
    # Unix seconds after which it no longer signs; 0 = until rotated away.
    expire_time: float = 0.0

    def valid_at(self, now: float) -> bool:
        return not self.expire_time or now < self.expire_time


@dataclass(frozen=True)
class StatusWebhookConfig:
    url: str
    # DeliveryState values whose events are posted; empty = all.
    states: frozenset[int]
    secrets: tuple[Secret, ...]

    def encode(self) -> bytes:
        return json.dumps(
            {
                "url": self.url,
                "states": sorted(self.states),
                "secrets": [[s.value, s.expire_time] for s in self.secrets],
            }
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> "StatusWebhookConfig":
        raw = json.loads(data)
        return cls(raw["url"], frozenset(raw["states"]), tuple(Secret(v, e) for v, e in raw["secrets"]))
