"""The console (herald-gateway at /) in a real browser against a real mesh, each person signing in through the
company's identity provider (a test one on loopback, authorization code with PKCE): support enters the id of a
message just sent and sees its deliveries with their states and reasons; an author edits a template while its
preview follows and saves a version, and is offered no replay; an operator replays a dead letter, which is then
delivered; an analyst charts a range of real sends and reads the numbers GetStats gives; support looks a user up,
asks whether they would get a template, and reads the audit trail. axe-core finds nothing
serious or critical on any page shown.

With HERALD_SCREENSHOTS=<directory>, the message page is saved there (docs/console-message.png is one)."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import common_pb2
from herald.v1 import dead_letter_service_pb2 as dlq
from herald.v1 import directory_service_pb2 as directory
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as providers_pb2
from herald.v1 import status_service_pb2 as status_pb2
from herald.v1 import topic_service_pb2 as topic_pb2
from playwright.async_api import Browser, Page, expect

from herald.libs.roles import ANALYST, AUTHOR, OPERATOR, SUPPORT
from herald.libs.timeutil import to_timestamp
from tests.e2e.conftest import JAEGER_UI, SignedIn
from tests.helpers.browser import chromium, serious_violations
from tests.helpers.client import all_final, bearer, rpc_error
from tests.helpers.dead_letters import ATTEMPTS, dead_lettered
from tests.helpers.webhook_sink import WebhookSink


def refusals(page: Page) -> list[str]:
    """The errors the page logs from now on (a Content Security Policy refusal is one)."""
    logged: list[str] = []
    page.on("console", lambda message: logged.append(message.text) if message.type == "error" else None)
    return logged


async def signed_in_page(browser: Browser, gateway_url: str, bypass_csp: bool = True) -> Page:
    """A new page signed in to the console through the identity provider, as whoever it signs in next."""
    context = await browser.new_context(bypass_csp=bypass_csp)
    page = await context.new_page()
    await page.goto(f"{gateway_url}/")
    await page.get_by_role("button", name="Sign in with your company account").click()
    return page


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
    assert final.trace_id, "the message keeps its Send's trace id"
    trace = page.get_by_role("link", name=f"{final.trace_id} in Jaeger")
    await expect(trace).to_have_attribute("href", f"{JAEGER_UI}/trace/{final.trace_id}")
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


async def test_an_author_edits_a_template_with_a_live_preview_and_saves_a_version(
    signed_in: SignedIn, browser: Browser
) -> None:
    provider, mesh, herald = signed_in
    template = await herald.create_template({"webhook": '{"text": "Hello {{ name }}"}'})
    provider.sign_in_as(f"arthur-{uuid.uuid4().hex[:6]}@example.com", [AUTHOR])
    page = await signed_in_page(browser, mesh.gateway_url)
    context = page.context
    await expect(page.get_by_role("link", name="Templates")).to_be_visible(timeout=15_000)
    assert await page.get_by_role("link", name="Dead letters").count() == 0, "replaying is an operator's"
    await page.get_by_role("link", name="Templates").click()
    await expect(page.get_by_role("table", name="Templates")).to_contain_text(template, timeout=10_000)
    assert await serious_violations(page) == []
    await page.get_by_role("link", name=template).click()

    preview = page.locator("#preview")
    await page.get_by_label("Variables").fill("name=Ada")
    await expect(preview).to_contain_text('{"text": "Hello Ada"}', timeout=10_000)
    body = page.get_by_label("Body (webhook)")
    await body.fill('{"text": "Good morning {{ name }}')
    await expect(page.locator("#template-contents-0-body-problem")).not_to_be_empty(timeout=10_000)
    await expect(body).to_have_attribute("aria-invalid", "true")
    await body.press_sequentially('!"}', delay=20)
    await expect(preview).to_contain_text('{"text": "Good morning Ada!"}', timeout=10_000)
    await expect(body).to_have_attribute("aria-invalid", "false")
    assert await serious_violations(page) == []

    await page.get_by_role("button", name="Save as a new version").click()
    await expect(page.get_by_role("status")).to_have_text(f"Saved {template} as version 2.", timeout=10_000)
    saved = await herald.admin_stub.GetTemplate(admin.GetTemplateRequest(template_id=template), metadata=herald.admin)
    assert saved.version == 2 and saved.contents[0].body == '{"text": "Good morning {{ name }}!"}'
    await page.get_by_label("Compare version 2 with").select_option("1")
    await expect(page.locator("pre.diff del")).to_contain_text('{"text": "Hello {{ name }}"}')
    await expect(page.locator("pre.diff ins")).to_contain_text('{"text": "Good morning {{ name }}!"}')
    assert await serious_violations(page) == []
    page.on("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Archive…").click()
    await expect(page.get_by_role("status")).to_have_text(f"{template} is archived.", timeout=10_000)

    created = f"console-{uuid.uuid4().hex[:6]}"
    await page.get_by_role("link", name="Templates").click()
    await page.get_by_label("New template's id").fill(created)
    await page.get_by_role("button", name="Create template").click()
    await expect(page.get_by_role("heading", name=f"{created}, version 1")).to_be_visible(timeout=10_000)

    refused = await rpc_error(
        herald.dead_letters.ReplayDeadLetters(
            dlq.ReplayDeadLettersRequest(channel="webhook"), metadata=bearer(provider.token([AUTHOR]))
        )
    )
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    await context.close()


async def test_an_operator_replays_a_dead_letter_and_the_message_is_delivered(
    signed_in: SignedIn, sink: WebhookSink, browser: Browser
) -> None:
    provider, mesh, herald = signed_in
    dead = await dead_lettered(herald, sink)
    failed = dead.delivery
    assert failed.state == common_pb2.DELIVERY_STATE_FAILED

    provider.sign_in_as(f"olga-{uuid.uuid4().hex[:6]}@example.com", [OPERATOR])
    page = await signed_in_page(browser, mesh.gateway_url)
    context = page.context
    await page.get_by_role("link", name="Dead letters").click(timeout=15_000)
    row = page.get_by_role("row").filter(has_text=failed.delivery_id)
    await expect(row).to_contain_text("502", timeout=15_000)
    assert await serious_violations(page) == []
    await row.get_by_role("button", name="Replay").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text(failed.delivery_id)
    await dialog.get_by_role("button", name="Replay", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("Replayed 1 dead letter.", timeout=10_000)

    sent = await herald.wait_message(
        dead.app, dead.message_id, lambda m: m.deliveries[0].state == common_pb2.DELIVERY_STATE_SENT
    )
    assert sent.deliveries[0].state == common_pb2.DELIVERY_STATE_SENT
    assert len(sink.for_path(dead.path)) == ATTEMPTS + 1
    await expect(page.get_by_role("heading", name="Unprocessed messages")).to_be_visible()
    account = f"slack-{uuid.uuid4().hex[:6]}"
    await herald.providers.CreateProviderAccount(
        providers_pb2.CreateProviderAccountRequest(
            account=providers_pb2.ProviderAccount(name=account, provider="slack_webhook", endpoint="http://127.0.0.1:9")
        ),
        metadata=herald.admin,
    )
    await page.get_by_role("link", name="Providers").click()
    await expect(page.get_by_role("row").filter(has_text=account)).to_contain_text("closed", timeout=10_000)
    assert await serious_violations(page) == []
    await context.close()


async def test_the_statistics_page_charts_real_sends_with_the_numbers_getstats_gives(
    signed_in: SignedIn, sink: WebhookSink, browser: Browser
) -> None:
    provider, mesh, herald = signed_in
    app_id, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    run = uuid.uuid4().hex[:8]
    sink.answer(f"/stats-gone-{run}", *[410] * 2)
    for path in ("ok", "ok", "ok", "gone", "gone"):
        recipient = msg.Recipient(addresses={"webhook": sink.url(f"/stats-{path}-{run}")})
        message_id = await herald.send(app, msg.SendRequest(template_id=template, recipients=[recipient]))
        await herald.wait_message(app, message_id, all_final)
    now = datetime.now(UTC)
    asked = status_pb2.GetStatsRequest(
        start_time=to_timestamp(now - timedelta(hours=24)),
        end_time=to_timestamp(now + timedelta(hours=1)),
        interval=status_pb2.STATS_INTERVAL_HOUR,
        app_id=app_id,
    )
    async with asyncio.timeout(30):
        while True:
            stats = await herald.status.GetStats(asked, metadata=app)
            if sum(r.sent + r.failed for r in stats.rows) >= 5:
                break
            await asyncio.sleep(0.2)

    provider.sign_in_as(f"ana-{run}@example.com", [ANALYST])
    for bypass_csp in (False, True):  # the page as served (its policy in force), then with axe-core added
        page = await signed_in_page(browser, mesh.gateway_url, bypass_csp)
        context = page.context
        problems = refusals(page)
        await page.get_by_role("link", name="Statistics").click(timeout=15_000)
        await page.get_by_label("App (empty: every app)").fill(app_id)
        await page.get_by_role("button", name="Show").click()
        table = page.get_by_role("table", name="Statistics")
        await expect(table.get_by_role("row")).to_have_count(len(stats.rows) + 1, timeout=15_000)
        for i, row in enumerate(stats.rows):
            shown = table.get_by_role("row").nth(i + 1)
            for state in ("sent", "delivered", "read", "failed", "suppressed"):
                await expect(shown.locator(f"[data-state={state}]")).to_have_text(str(getattr(row, state)))
        drawn = await page.evaluate(
            "() => { const c = document.querySelector('canvas'); const blank = document.createElement('canvas');"
            " blank.width = c.width; blank.height = c.height;"
            " return c.width > 0 && c.toDataURL() !== blank.toDataURL(); }"
        )
        assert drawn, "the chart is drawn"
        if bypass_csp:
            assert await serious_violations(page) == []
        else:
            assert problems == [], "nothing the page's policy refused"
        await context.close()
    assert sum(r.sent for r in stats.rows) == 3 and sum(r.failed for r in stats.rows) == 2


async def test_support_looks_a_user_up_asks_why_and_reads_the_audit_trail(
    signed_in: SignedIn, sink: WebhookSink, browser: Browser
) -> None:
    provider, mesh, herald = signed_in
    app_id, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"})
    user_id = f"cleo-{uuid.uuid4().hex[:8]}"
    user = directory.User(user_id=user_id, addresses={"webhook": sink.url(f"/{user_id}")})
    await herald.directory.UpsertUser(directory.UpsertUserRequest(user=user), metadata=herald.admin)
    await herald.directory.SetPreference(
        directory.SetPreferenceRequest(user_id=user_id, category=common_pb2.CATEGORY_MARKETING, opted_out=True),
        metadata=herald.admin,
    )
    message_id = await herald.send(
        app, msg.SendRequest(template_id=template, recipients=[msg.Recipient(user_id=user_id)])
    )
    await herald.wait_message(app, message_id, all_final)

    provider.sign_in_as(f"sam-{uuid.uuid4().hex[:6]}@example.com", [SUPPORT])
    page = await signed_in_page(browser, mesh.gateway_url)
    context = page.context
    await page.get_by_role("link", name="Users").click(timeout=15_000)
    await page.get_by_label("User id").fill(user_id)
    await page.get_by_role("button", name="Show").click()
    deliveries = page.get_by_role("table", name="The user's deliveries")
    await expect(deliveries).to_contain_text(message_id, timeout=15_000)
    await expect(page.get_by_text("marketing on every channel")).to_be_visible()
    await page.get_by_label("App", exact=True).fill(app_id)
    await page.get_by_label("Template", exact=True).fill(template)
    await page.get_by_role("button", name="Explain").click()
    verdicts = page.get_by_role("table", name="Would they get it")
    await expect(verdicts.get_by_role("row").filter(has_text="webhook")).to_contain_text("send", timeout=15_000)
    assert await serious_violations(page) == []

    await page.get_by_role("link", name="Audit trail").click()
    await page.get_by_label("Target").fill(f"users/{user_id}")
    await page.get_by_role("button", name="Show").click()
    trail = page.get_by_role("table", name="Audit trail")
    upserted = trail.get_by_role("row").filter(has_text="DirectoryService/UpsertUser").filter(has_text=user_id)
    await expect(upserted).to_contain_text("admin-token", timeout=15_000)
    await expect(trail.get_by_role("row")).to_have_count(2)  # the header and UpsertUser: only this target
    assert await serious_violations(page) == []
    await context.close()


async def test_an_operator_creates_an_app_rotates_its_key_and_disables_it(
    signed_in: SignedIn, browser: Browser
) -> None:
    provider, mesh, herald = signed_in
    name = f"console-app-{uuid.uuid4().hex[:6]}"
    provider.sign_in_as(f"olga-{uuid.uuid4().hex[:6]}@example.com", [OPERATOR])
    page = await signed_in_page(browser, mesh.gateway_url)
    context = page.context
    await page.get_by_role("link", name="Apps").click(timeout=15_000)
    await page.get_by_label("New app's name").fill(name)
    await page.get_by_label("Channels it may send on").fill("webhook")
    await page.get_by_role("button", name="Create app").click()
    first_key = await page.locator("#new-key").text_content(timeout=10_000)
    assert first_key and first_key.startswith("hk_")
    await page.get_by_role("button", name="I have copied it").click()
    row = page.get_by_role("row").filter(has_text=name)
    await expect(row).to_contain_text("enabled")
    assert await serious_violations(page) == []

    await row.get_by_role("button", name=f"Rotate key of {name}").click()
    await page.get_by_label("Hours the current key keeps working").fill("0")
    await page.get_by_role("button", name="Confirm").click()
    second_key = await page.locator("#new-key").text_content(timeout=10_000)
    assert second_key and second_key.startswith("hk_") and second_key != first_key
    await page.get_by_role("button", name="I have copied it").click()
    await row.get_by_role("button", name=f"Disable {name}").click()
    await page.get_by_role("button", name="Confirm").click()
    await expect(row).to_contain_text("disabled", timeout=10_000)

    app_id = (await row.get_by_role("cell").first.text_content()) or ""
    shown = await herald.admin_stub.GetApp(admin.GetAppRequest(app_id=app_id), metadata=herald.admin)
    assert shown.name == name and shown.disabled
    await context.close()


async def test_an_operator_imports_a_topics_subscribers_from_a_csv_file(
    signed_in: SignedIn, browser: Browser, tmp_path: Path
) -> None:
    provider, mesh, herald = signed_in
    app_id, app = await herald.create_app()
    topic = f"launch-{uuid.uuid4().hex[:6]}"
    await herald.topics.CreateTopic(topic_pb2.CreateTopicRequest(topic=topic_pb2.Topic(topic_key=topic)), metadata=app)
    users = [f"reader-{n}" for n in range(2500)]
    csv = tmp_path / "subscribers.csv"
    csv.write_text("user_id,name\n" + "".join(f"{u},Reader {n}\n" for n, u in enumerate(users)))

    provider.sign_in_as(f"olga-{uuid.uuid4().hex[:6]}@example.com", [OPERATOR])
    page = await signed_in_page(browser, mesh.gateway_url)
    context = page.context
    await page.get_by_role("link", name="Topics").click(timeout=15_000)
    await page.get_by_label("App", exact=True).fill(app_id)
    await page.get_by_role("button", name="Show its topics").click()
    await expect(page.get_by_role("table", name="Topics")).to_contain_text(topic, timeout=10_000)
    await page.get_by_label("Topic", exact=True).fill(topic)
    await page.get_by_label("CSV file").set_input_files(csv)
    await page.get_by_role("button", name="Import").click()
    await expect(page.locator("#import-said")).to_have_text("2500 of 2500 imported", timeout=30_000)
    await expect(page.get_by_role("status")).to_contain_text("2500 newly subscribed")
    assert await page.locator("#import-progress").get_attribute("value") == "2500"
    assert await serious_violations(page) == []

    listed = await herald.topics.GetTopic(topic_pb2.GetTopicRequest(topic_key=topic), metadata=app)
    assert listed.subscriber_count == len(users)
    await context.close()
