"""A local Slack incoming-webhook endpoint (POST /services/T.../B.../...), written from Slack's documentation
(https://api.slack.com/messaging/webhooks, https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks,
https://api.slack.com/reference/block-kit/blocks) independently of herald's plug-in: it checks the payload
and the Block Kit limits, throttles a webhook past a message a second, and answers in plain text with
Slack's HTTP statuses.
"""

import enum
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.adapters.channels.fake_provider import FakeHttpProvider, Request


class State(enum.Enum):
    ACTIVE = "active"
    # The channel was archived: 410 channel_is_archived.
    ARCHIVED = "archived"
    # The webhook URL was revoked (app removed, URL regenerated): 403 invalid_token.
    REVOKED = "revoked"
    # The workspace restricts posting here: 403 action_prohibited.
    PROHIBITED = "prohibited"


_REFUSALS = {
    State.ARCHIVED: (410, "channel_is_archived"),
    State.REVOKED: (403, "invalid_token"),
    State.PROHIBITED: (403, "action_prohibited"),
}


@dataclass
class Hook:
    state: State = State.ACTIVE
    per_second: int = 1
    # Messages posted to the hook's channel.
    posted: list[dict[str, Any]] = field(default_factory=list)
    posted_at: list[float] = field(default_factory=list)


@dataclass
class FakeSlack(FakeHttpProvider[Request]):
    hooks: dict[str, Hook] = field(default_factory=dict)
    # Answer like Slack failing: 500 rollup_error.
    outage: bool = False

    def add_hook(self, hook: Hook) -> str:
        """The webhook's URL."""
        path = f"T{secrets.token_hex(4).upper()}/B{secrets.token_hex(4).upper()}/{secrets.token_urlsafe(18)}"
        self.hooks[path] = hook
        return f"{self.url}/services/{path}"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/services/{path:.+}", self._post)]

    async def _post(self, request: web.Request) -> web.Response:
        self.received.append(await Request.of(request))
        await self.stall()
        if self.outage:
            return web.Response(status=500, text="rollup_error")
        hook = self.hooks.get(request.match_info["path"])
        if hook is None:
            return web.Response(status=404, text="no_service")
        if hook.state in _REFUSALS:
            status, error = _REFUSALS[hook.state]
            return web.Response(status=status, text=error)
        if request.content_type != "application/json":
            return web.Response(status=400, text="invalid_payload")
        try:
            message = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
            return web.Response(status=400, text="no_text")
        if not _blocks_ok(message.get("blocks", [])):
            return web.Response(status=400, text="invalid_blocks")
        now = time.monotonic()
        hook.posted_at[:] = [t for t in hook.posted_at if now - t < 1]
        if len(hook.posted_at) >= hook.per_second:
            return web.Response(status=429, text="rate_limited", headers={"Retry-After": "1"})
        hook.posted_at.append(now)
        hook.posted.append(message)
        return web.Response(text="ok")


def _blocks_ok(blocks: Any) -> bool:
    """The Block Kit limits herald's messages could reach: 50 blocks, a header's 150 characters of plain
    text, a section's 3000."""
    limits = {("header", "plain_text"): 150, ("section", "mrkdwn"): 3000}
    if not isinstance(blocks, list) or len(blocks) > 50:
        return False
    for block in blocks:
        try:
            limit = limits[(block["type"], block["text"]["type"])]
            if not 0 < len(block["text"]["text"]) <= limit:
                return False
        except (KeyError, TypeError):
            return False
    return True
