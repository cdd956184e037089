"""A web page shows a user's inbox through herald-gateway, in a real browser: web/inbox-example (connect-web, JSON)
served from a loopback origin the gateway allows, opened in Debian's chromium with an inbox token. It syncs what
is stored, then a live Subscribe shows a new item within a second of its Send, and marking it read there reads it
on the server.

Marked serial: the second is herald's latency, measured with the machine to itself."""

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from herald.v1 import inbox_service_pb2
from playwright.async_api import Browser, Locator, Page, expect

from devmesh.mesh import Mesh
from tests.adapters.inbox.timeline import inbox_app, send
from tests.conftest import PAGE_ORIGIN
from tests.helpers.browser import chromium
from tests.helpers.client import Herald

PAGE = Path(__file__).resolve().parents[2] / "web" / "dist" / "inbox-example"
pytestmark = pytest.mark.serial


@pytest.fixture
async def page_server() -> AsyncIterator[str]:
    """web/dist/inbox-example (made by `make web`) at PAGE_ORIGIN, which the tests' gateways allow."""
    assert (PAGE / "main.js").exists(), "run `make web` to build the example page"
    app = web.Application()
    app.router.add_static("/", PAGE)
    runner = web.AppRunner(app)
    await runner.setup()
    origin = urlsplit(PAGE_ORIGIN)
    await web.TCPSite(runner, origin.hostname, origin.port).start()
    yield PAGE_ORIGIN
    await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


async def test_a_page_syncs_then_shows_a_new_item_within_a_second_of_its_send(
    shared_mesh: tuple[Mesh, Herald], page_server: str, browser: Browser
) -> None:
    mesh, herald = shared_mesh
    app, template = await inbox_app(herald)
    user = f"u-{uuid.uuid4().hex[:8]}"
    minted = await herald.inbox.CreateInboxToken(inbox_service_pb2.CreateInboxTokenRequest(user_id=user), metadata=app)
    await send(herald, app, template, user, 1, 1)

    page = await browser.new_page()
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.on("requestfailed", lambda request: failures.append(f"{request.url}: {request.failure}"))
    await page.goto(f"{page_server}/index.html#gateway={mesh.gateway_url}&token={minted.token}")
    await expect(page.get_by_role("status")).to_have_text("Up to date", timeout=30_000)
    await expect(item(page, 1)).to_be_visible(timeout=30_000)

    sent = time.monotonic()
    await send(herald, app, template, user, 2, 1)
    await item(page, 2).wait_for(timeout=5_000)
    shown = time.monotonic() - sent
    assert shown < 1.0, f"the new item showed {shown:.2f} s after its Send"
    await expect(page.get_by_role("listitem").first).to_contain_text("item 2")  # newest first
    await expect(page.get_by_label("unread items")).to_have_text("(2)")

    await page.get_by_role("button", name='Mark "item 2" read').click()
    await expect(page.get_by_label("unread items")).to_have_text("(1)", timeout=10_000)
    count = await herald.inbox.GetUnreadCount(inbox_service_pb2.GetUnreadCountRequest(user_id=user), metadata=app)
    assert count.unread_count == 1, "read in the browser, read on the server"
    assert not failures


def item(page: Page, n: int) -> Locator:
    return page.get_by_role("listitem").filter(has_text=f"item {n}")
