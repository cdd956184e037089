"""Stand-ins for what intake's acceptance asks (acceptance.py's protocols), answering as a test tells them."""

import itertools

from herald.v1 import admin_service_pb2, common_pb2

from herald.libs.errors import NotFound
from herald.services.intake.shedding import Shed


class Templates:
    def __init__(self, *templates: admin_service_pb2.Template) -> None:
        self._templates = {t.template_id: t for t in templates}

    async def latest_for_sending(self, template_id: str) -> admin_service_pb2.Template:
        if template_id not in self._templates:
            raise NotFound(f"template '{template_id}' not found")
        return self._templates[template_id]


class Topics:
    def __init__(self, *known: str) -> None:
        self._known = set(known)

    async def exists(self, app_id: str, topic_key: str) -> bool:
        return f"{app_id}.{topic_key}" in self._known


class Shedder:
    def __init__(self, shedding: bool = False) -> None:
        self._shedding = shedding

    def check(self, category: int) -> None:
        if self._shedding and category == common_pb2.CATEGORY_MARKETING:
            raise Shed("marketing is being shed", 5.0)


class Ids:
    def __init__(self) -> None:
        self._next = itertools.count(1)

    def new(self, app_id: str) -> str:
        return f"msg_{app_id}_{next(self._next)}"


class Limiter:
    """Grants at most `left` messages, then asks for a retry in 0.25 s."""

    def __init__(self, left: int = 1_000) -> None:
        self.left = left

    async def take(self, key: str, rate: float, wanted: int) -> tuple[int, float]:
        granted = min(wanted, self.left)
        self.left -= granted
        return granted, 0.0 if granted == wanted else 0.25
