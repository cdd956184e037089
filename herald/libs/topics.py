"""Which topics exist, for intake to refuse a Send to a topic the app does not have (NOT_FOUND) without asking
the router: the router, which owns the topics and their subscribers (TopicService), registers each one in the
KV bucket herald_topics, under "<app id>.<topic key>"."""

from nats.js.errors import KeyDeletedError, KeyNotFoundError

from herald.libs.bus import Bucket, KeyValues

BUCKET = "herald_topics"


class TopicRegistry:
    def __init__(self, kv: Bucket) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, bus: KeyValues) -> "TopicRegistry":
        return cls(await bus.key_value(BUCKET))

    async def register(self, app_id: str, topic_key: str) -> None:
        await self._kv.put(_key(app_id, topic_key), b"1")

    async def forget(self, app_id: str, topic_key: str) -> None:
        await self._kv.delete(_key(app_id, topic_key))

    async def exists(self, app_id: str, topic_key: str) -> bool:
        try:
            await self._kv.get(_key(app_id, topic_key))
        except (KeyNotFoundError, KeyDeletedError):
            return False
        return True


def _key(app_id: str, topic_key: str) -> str:
    return f"{app_id}.{topic_key}"
