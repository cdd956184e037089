"""The shape every channel plug-in has: take a rendered delivery, return the provider's id or a classified error."""

from dataclasses import dataclass
from typing import Protocol

import aiohttp
from herald.v1 import events_pb2

from libs.config import Settings


@dataclass(frozen=True)
class Sent:
    provider: str
    provider_message_id: str = ""


class DeliveryError(Exception):
    """The provider did not take the delivery. `retryable` says whether trying again later can help;
    `retry_after` is the provider's own hint in seconds (e.g. HTTP Retry-After), if it gave one."""

    def __init__(self, reason: str, *, provider: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.provider = provider
        self.retryable = retryable
        self.retry_after = retry_after


class Channel(Protocol):
    name: str

    async def send(self, job: events_pb2.DeliveryJob) -> Sent:
        """Deliver once; raise DeliveryError when the provider refuses or cannot be reached."""
        ...


class ChannelFactory(Protocol):
    def __call__(self, settings: Settings, http: aiohttp.ClientSession) -> Channel: ...
