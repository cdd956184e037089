"""The console (herald-gateway at /) in a real browser against a real mesh: support signs in through the company's
identity provider (a test one on loopback, authorization code with PKCE), enters the id of a message just sent,
and sees its deliveries with their states and reasons; axe-core finds nothing serious on either page.

With HERALD_SCREENSHOTS=<directory>, the message page is saved there (docs/console-message.png is one)."""

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from playwright.async_api import Browser, expect

from herald.libs.roles import SUPPORT
from tests.e2e.conftest import SignedIn
from tests.helpers.browser import chromium, serious_violations
from tests.helpers.client import all_final
from tests.helpers.webhook_sink import WebhookSink


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


async def test_support_signs_in_and_sees_what_happened_to_a_message(
    signed_in: SignedIn, sink: WebhookSink, browser: Browser
) -> None:
    provider, mesh, herald = signed_in
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": '{"order": "{{ order }}"}'})
    run = uuid.uuid4().hex[:8]
    sink.answer(f"/gone-{run}", 410)
    recipients = [
        msg.Recipient(user_id=f"ada-{run}", addresses={"webhook": sink.url(f"/ok-{run}")}),
        msg.Recipient(user_id=f"bob-{run}", addresses={"webhook": sink.url(f"/gone-{run}")}),
    ]
    message_id = await herald.send(
        app, msg.SendRequest(template_id=template, recipients=recipients, variables={"order": "1042"})
    )
    final = await herald.wait_message(app, message_id, lambda m: all_final(m, 2))
    failed = next(d for d in final.deliveries if d.state == common_pb2.DELIVERY_STATE_FAILED)

    provider.sign_in_as(f"sam-{run}@example.com", [SUPPORT])
    context = await browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{mesh.gateway_url}/")
    await expect(page.get_by_role("heading", name="Sign in to herald")).to_be_visible()
    assert await serious_violations(page) == []

    await page.get_by_role("button", name="Sign in with your company account").click()
    await expect(page.get_by_text(f"sam-{run}@example.com ({SUPPORT})")).to_be_visible(timeout=15_000)
    await page.get_by_label("Message id").fill(message_id)
    await page.get_by_role("button", name="Show").click()

    deliveries = page.get_by_role("table", name="Deliveries")
    await expect(deliveries.get_by_role("row")).to_have_count(3, timeout=15_000)  # the header and two deliveries
    ada = deliveries.get_by_role("row").filter(has_text=f"ada-{run}")
    bob = deliveries.get_by_role("row").filter(has_text=f"bob-{run}")
    await expect(ada).to_contain_text("sent")
    await expect(bob).to_contain_text("failed")
    await expect(bob).to_contain_text(failed.reason)
    await expect(page.get_by_text(f"{template} (version 1)")).to_be_visible()
    await bob.get_by_text("steps").click()
    await expect(bob.get_by_role("listitem").first).to_contain_text("pending")
    assert await serious_violations(page) == []
    assert errors == []
    if shots := os.environ.get("HERALD_SCREENSHOTS"):
        await page.screenshot(path=str(Path(shots) / "console-message.png"), full_page=True)
    await context.close()


async def test_the_console_is_served_with_a_policy_that_keeps_it_to_herald_and_the_identity_provider(
    signed_in: SignedIn,
) -> None:
    provider, mesh, _ = signed_in
    async with chromium() as running:
        page = await running.new_page()
        reply = await page.goto(f"{mesh.gateway_url}/")
        assert reply is not None and reply.ok
        policy = await reply.header_value("content-security-policy") or ""
        assert "default-src 'self'" in policy and f"connect-src 'self' {provider.issuer}" in policy
        config = await (await page.request.get(f"{mesh.gateway_url}/console/config.json")).json()
        assert config["oidc"]["issuer"] == provider.issuer and config["oidc"]["clientId"] == "herald-console"
