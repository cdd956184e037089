"""The audit trail: every RPC that changes state, called once, leaves exactly one record on herald.event.audit,
kept by feedback and listed by AuditService.ListAuditEvents, naming who called it - a signed-in operator's
subject, `admin-token` or `app:<id>` - and never a key, a secret, a token or a credential."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import audit_service_pb2 as audit_pb
from herald.v1 import audit_service_pb2_grpc, events_pb2
from herald.v1 import common_pb2 as common
from herald.v1 import dead_letter_service_pb2 as dlq
from herald.v1 import directory_service_pb2 as directory
from herald.v1 import inbox_service_pb2 as inbox
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as providers
from herald.v1 import routing_service_pb2 as routing
from herald.v1 import suppression_service_pb2 as suppression
from herald.v1 import topic_service_pb2 as topics
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from herald.libs.config import Settings
from herald.libs.roles import ANALYST, AUTHOR, OPERATOR, RULES, SUPPORT
from herald.libs.store import Database
from herald.libs.timeutil import to_timestamp
from herald.tools.heraldctl.main import cli
from tests.e2e.conftest import SignedIn
from tests.helpers.client import Herald, Metadata, bearer, rpc_error
from tests.helpers.webhook_sink import WebhookSink

CREDENTIAL = "HERALD_PROVIDER_AUDIT_TOKEN"


async def _stream(*requests: Any) -> AsyncIterator[Any]:
    for request in requests:
        yield request


async def _records(herald: Herald, who: Metadata, actors: Iterable[str], since: datetime, count: int) -> list[Any]:
    """The records of `actors` since `since`, once `count` of them are kept (feedback stores them as they come),
    all pages of them."""
    stub = audit_service_pb2_grpc.AuditServiceStub(herald.channel("feedback"))
    found: list[events_pb2.AuditEvent] = []
    async with asyncio.timeout(30):
        while True:
            found = []
            for actor in actors:
                token = ""
                while True:
                    page = await stub.ListAuditEvents(
                        audit_pb.ListAuditEventsRequest(
                            actor=actor, start_time=to_timestamp(since), page_size=5, page_token=token
                        ),
                        metadata=who,
                    )
                    found += page.audit_events
                    if not (token := page.next_page_token):
                        break
            if len(found) >= count:
                return found
            await asyncio.sleep(0.2)


async def test_every_change_leaves_one_record_with_its_actor_and_no_secret(
    signed_in: SignedIn, sink: WebhookSink
) -> None:
    provider, _, herald = signed_in
    since = datetime.now(UTC) - timedelta(seconds=1)
    run = uuid.uuid4().hex[:6]
    olga, arthur = f"olga-{run}@example.com", f"arthur-{run}@example.com"
    operator_token = provider.token([OPERATOR], subject=olga)
    author_token = provider.token([AUTHOR], subject=arthur)
    as_operator, as_author = bearer(operator_token), bearer(author_token)

    created = await herald.admin_stub.CreateApp(
        admin.CreateAppRequest(name=f"audited-{run}", allowed_channels=["webhook"]), metadata=herald.admin
    )
    app_id = created.app.app_id
    rotated = await herald.admin_stub.RotateAppKey(admin.RotateAppKeyRequest(app_id=app_id), metadata=as_operator)
    as_app = bearer(rotated.api_key)
    app_actor = f"app:{app_id}"
    await herald.admin_stub.SetContentRetention(
        admin.SetContentRetentionRequest(app_id=app_id, content_retention_days=30), metadata=as_operator
    )
    await herald.admin_stub.DisableApp(admin.DisableAppRequest(app_id=app_id), metadata=as_operator)
    await herald.admin_stub.EnableApp(admin.EnableAppRequest(app_id=app_id), metadata=as_operator)
    webhook = await herald.admin_stub.SetStatusWebhook(
        admin.SetStatusWebhookRequest(webhook=admin.StatusWebhook(app_id=app_id, url=sink.url(f"/status-{run}"))),
        metadata=as_operator,
    )
    second_secret = await herald.admin_stub.RotateStatusWebhookSecret(
        admin.RotateStatusWebhookSecretRequest(app_id=app_id), metadata=as_operator
    )
    await herald.admin_stub.DeleteStatusWebhook(admin.DeleteStatusWebhookRequest(app_id=app_id), metadata=as_operator)

    template_id = f"audited-{run}"
    template = admin.Template(
        template_id=template_id,
        category=common.CATEGORY_NOTIFICATION,
        contents=[common.ChannelContent(channel="webhook", body="{}")],
    )
    await herald.admin_stub.CreateTemplate(admin.CreateTemplateRequest(template=template), metadata=as_author)
    template.description = "now with a description"
    await herald.admin_stub.UpdateTemplate(admin.UpdateTemplateRequest(template=template), metadata=as_author)

    account = providers.ProviderAccount(
        name=f"twilio-{run}",
        provider="twilio",
        endpoint="http://127.0.0.1:9",
        settings={"account_sid": "AC0", "from": "+15550100"},
        credentials={"auth_token": CREDENTIAL},
    )
    await herald.providers.CreateProviderAccount(
        providers.CreateProviderAccountRequest(account=account), metadata=as_operator
    )
    account.priority = 5
    await herald.providers.UpdateProviderAccount(
        providers.UpdateProviderAccountRequest(account=account), metadata=as_operator
    )
    await herald.providers.DeleteProviderAccount(
        providers.DeleteProviderAccountRequest(name=account.name), metadata=as_operator
    )

    rule = await herald.routing.CreateFrequencyRule(
        routing.CreateFrequencyRuleRequest(
            rule=routing.FrequencyRule(
                category=common.CATEGORY_MARKETING, app_id=app_id, max_deliveries=3, window=Duration(seconds=3600)
            )
        ),
        metadata=as_operator,
    )
    await herald.routing.DeleteFrequencyRule(
        routing.DeleteFrequencyRuleRequest(rule_id=rule.rule_id), metadata=as_operator
    )

    user_id = f"u-{run}"
    address = f"someone-{run}@example.com"
    await herald.directory.UpsertUser(
        directory.UpsertUserRequest(user=directory.User(user_id=user_id, addresses={"email": address})),
        metadata=as_operator,
    )
    await herald.directory.SetPreference(
        directory.SetPreferenceRequest(user_id=user_id, category=common.CATEGORY_MARKETING, opted_out=True),
        metadata=as_operator,
    )
    await herald.directory.ImportUsers(
        _stream(directory.ImportUsersRequest(users=[directory.User(user_id=f"{user_id}-2")])), metadata=as_operator
    )
    await herald.directory.DeleteUser(directory.DeleteUserRequest(user_id=user_id), metadata=as_operator)
    entry = suppression.Suppression(channel="email", address=address, detail="asked by phone")
    await herald.suppressions.CreateSuppression(
        suppression.CreateSuppressionRequest(suppression=entry), metadata=as_operator
    )
    await herald.suppressions.DeleteSuppression(
        suppression.DeleteSuppressionRequest(channel="email", address=address), metadata=as_operator
    )

    topic_key = f"news-{run}"
    await herald.topics.CreateTopic(topics.CreateTopicRequest(topic=topics.Topic(topic_key=topic_key)), metadata=as_app)
    await herald.topics.AddSubscribers(
        _stream(topics.AddSubscribersRequest(topic_key=topic_key, user_ids=[user_id])), metadata=as_app
    )
    await herald.topics.RemoveSubscribers(
        _stream(topics.RemoveSubscribersRequest(topic_key=topic_key, user_ids=[user_id], app_id=app_id)),
        metadata=as_operator,
    )
    await herald.topics.DeleteTopic(topics.DeleteTopicRequest(topic_key=topic_key, app_id=app_id), metadata=as_operator)

    later = to_timestamp(datetime.now(UTC) + timedelta(hours=1))
    audience = await herald.messages.SendAudience(
        _stream(
            msg.SendAudienceRequest(message=msg.SendRequest(template_id=template_id, send_at=later)),
            msg.SendAudienceRequest(
                recipients=msg.AudienceChunk(recipients=[msg.Recipient(addresses={"webhook": sink.url("/a")})])
            ),
        ),
        metadata=as_app,
    )
    await herald.messages.CancelMessage(msg.CancelMessageRequest(message_id=audience.message_id), metadata=as_app)
    to_sink = msg.Recipient(addresses={"webhook": sink.url("/audit")}, variables={"code": "4242-secret-ish"})
    sent = await herald.messages.Send(msg.SendRequest(template_id=template_id, recipients=[to_sink]), metadata=as_app)
    await herald.messages.SendBatch(
        msg.SendBatchRequest(requests=[msg.SendRequest(template_id=template_id, recipients=[to_sink])]),
        metadata=as_app,
    )
    await herald.inbox.MarkRead(inbox.MarkReadRequest(user_id=user_id, up_to_seq=1), metadata=as_app)
    await herald.inbox.DeleteItems(inbox.DeleteItemsRequest(user_id=user_id, seqs=[1]), metadata=as_app)

    await herald.dead_letters.ReplayDeadLetters(
        dlq.ReplayDeadLettersRequest(category=common.CATEGORY_MARKETING, channel="webhook"), metadata=as_operator
    )
    await herald.dead_letters.ReplayUnprocessedMessages(
        dlq.ReplayUnprocessedMessagesRequest(consumer="router-marketing"), metadata=as_operator
    )
    await herald.admin_stub.ArchiveTemplate(admin.ArchiveTemplateRequest(template_id=template_id), metadata=as_author)

    audited = {method for method, rule in RULES.items() if rule.audited}
    support = bearer(provider.token([SUPPORT], subject=f"sam-{run}@example.com"))
    records = await _records(herald, support, (olga, arthur, app_actor), since, len(audited) - 1)
    records += await _records(herald, support, ("admin-token",), since, 1)
    mine = [r for r in records if r.actor != "admin-token" or r.target == f"apps/{app_id}"]

    assert sorted(r.action for r in mine) == sorted(audited), "one record for each state-changing RPC"
    by_action = {r.action: r for r in mine}
    assert by_action["herald.v1.AdminService/CreateApp"].actor == "admin-token"
    for action in ("CreateTemplate", "UpdateTemplate", "ArchiveTemplate"):
        assert by_action[f"herald.v1.AdminService/{action}"].actor == arthur
        assert by_action[f"herald.v1.AdminService/{action}"].target == f"templates/{template_id}"
    for action in ("MessageService/SendAudience", "MessageService/CancelMessage"):
        assert by_action[f"herald.v1.{action}"].target == f"messages/{audience.message_id}"
    app_calls = {"SendAudience", "CancelMessage", "CreateTopic", "AddSubscribers", "Send", "SendBatch"}
    app_calls |= {"MarkRead", "DeleteItems"}
    for record in mine:
        assert record.outcome == "OK", record
        if record.action.rsplit("/", 1)[1] in app_calls:
            assert record.actor == app_actor
        elif record.action != "herald.v1.AdminService/CreateApp" and record.actor != arthur:
            assert record.actor == olga and list(record.roles) == [OPERATOR]
    assert by_action["herald.v1.TopicService/AddSubscribers"].target == f"apps/{app_id}/topics/{topic_key}"
    send = by_action["herald.v1.MessageService/Send"]
    assert send.target == f"messages/{sent.message_id}" and not send.HasField("request"), (
        "a message's content is its own"
    )
    assert by_action["herald.v1.InboxService/MarkRead"].target == f"apps/{app_id}/users/{user_id}/inbox"

    updated = by_action["herald.v1.AdminService/UpdateTemplate"]
    assert "description" not in updated.before and updated.after["description"] == "now with a description"
    disabled = by_action["herald.v1.AdminService/DisableApp"]
    assert "disabled" not in disabled.before and disabled.after["disabled"] is True
    assert by_action["herald.v1.ProviderService/DeleteProviderAccount"].before["name"] == account.name

    text_of_all = "\n".join(json_format.MessageToJson(r) for r in records)
    secrets = {
        "the first API key": created.api_key,
        "the rotated API key": rotated.api_key,
        "a webhook secret": webhook.secret,
        "the rotated webhook secret": second_secret.secret,
        "a provider credential": CREDENTIAL,
        "an operator's token": operator_token,
        "an author's token": author_token,
        "an e-mail address": address,
        "a message's variables": "4242-secret-ish",
    }
    assert [what for what, secret in secrets.items() if secret in text_of_all] == []
    assert "[redacted]" in json_format.MessageToJson(by_action["herald.v1.AdminService/CreateApp"])


async def test_a_refused_change_is_recorded_and_only_the_right_roles_list_the_trail(signed_in: SignedIn) -> None:
    provider, _, herald = signed_in
    since = datetime.now(UTC) - timedelta(seconds=1)
    analyst = f"ana-{uuid.uuid4().hex[:6]}@example.com"
    refused = await rpc_error(
        herald.admin_stub.CreateApp(
            admin.CreateAppRequest(name="not mine to make"), metadata=bearer(provider.token([ANALYST], subject=analyst))
        )
    )
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    [record] = await _records(herald, bearer(provider.token([OPERATOR])), (analyst,), since, 1)
    assert record.action == "herald.v1.AdminService/CreateApp" and record.outcome == "PERMISSION_DENIED"
    assert list(record.roles) == [ANALYST]

    # A request no column can hold is refused, and still recorded.
    olga = f"olga-{uuid.uuid4().hex[:6]}@example.com"
    app_id, _ = await herald.create_app()
    hostile = await rpc_error(
        herald.topics.DeleteTopic(
            topics.DeleteTopicRequest(topic_key="news\x00" + "x" * 500, app_id=app_id),
            metadata=bearer(provider.token([OPERATOR], subject=olga)),
        )
    )
    assert hostile.code() == grpc.StatusCode.INVALID_ARGUMENT
    [kept] = await _records(herald, herald.admin, (olga,), since, 1)
    assert kept.outcome == "INVALID_ARGUMENT" and kept.target.startswith(f"apps/{app_id}/topics/news")

    stub = audit_service_pb2_grpc.AuditServiceStub(herald.channel("feedback"))
    denied = await rpc_error(
        stub.ListAuditEvents(audit_pb.ListAuditEventsRequest(), metadata=bearer(provider.token([AUTHOR])))
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    bad = await rpc_error(
        stub.ListAuditEvents(audit_pb.ListAuditEventsRequest(page_token="nope"), metadata=herald.admin)
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_trail_is_append_only_in_the_database(signed_in: SignedIn) -> None:
    provider, mesh, herald = signed_in
    since = datetime.now(UTC) - timedelta(seconds=1)
    actor = f"olga-{uuid.uuid4().hex[:6]}@example.com"
    await herald.admin_stub.CreateApp(
        admin.CreateAppRequest(name="append-only"), metadata=bearer(provider.token([OPERATOR], subject=actor))
    )
    [record] = await _records(herald, herald.admin, (actor,), since, 1)
    env = mesh.binaries["feedback"].env
    db = await Database.open(Settings.from_env("feedback", env).database_url, "feedback")
    try:
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.session.begin() as session:
                await session.execute(
                    text("UPDATE feedback_audit_events SET actor = 'someone-else' WHERE event_id = :id"),
                    {"id": record.event_id},
                )
    finally:
        await db.close()


async def test_heraldctl_lists_the_trail_and_names_the_app_whose_topics_an_operator_changes(
    signed_in: SignedIn,
) -> None:
    provider, mesh, herald = signed_in
    app_id, _ = await herald.create_app()
    olga = f"olga-{uuid.uuid4().hex[:6]}@example.com"
    where = {f"HERALD_{s.upper()}_ADDR": mesh.addr(s) for s in ("intake", "router", "feedback")}
    env = {
        **where,
        "HERALD_ADMIN_TOKEN": "",
        "COLUMNS": "250",
        "HERALD_TOKEN": provider.token([OPERATOR], subject=olga),
    }
    runner = CliRunner()

    made = runner.invoke(cli, ["topics", "create", "launch", "--app", app_id], env=env)
    assert made.exit_code == 0, made.output
    listed = runner.invoke(cli, ["topics", "list", "--app", app_id, "--json"], env=env)
    assert [t["topic_key"] for t in json.loads(listed.output)["topics"]] == ["launch"]

    support = {**env, "HERALD_TOKEN": provider.token([SUPPORT])}
    audit_of_olga = ["audit", "list", "--actor", olga, "--json"]
    async with asyncio.timeout(30):
        while not (found := json.loads(runner.invoke(cli, audit_of_olga, env=support).output)["audit_events"]):
            await asyncio.sleep(0.2)
    [record] = found
    assert record["action"] == "herald.v1.TopicService/CreateTopic"
    assert record["target"] == f"apps/{app_id}/topics/launch" and record["outcome"] == "OK"
    table = runner.invoke(cli, ["audit", "list", "--target", f"apps/{app_id}/topics/launch"], env=support)
    assert table.exit_code == 0 and "TopicService/CreateTopic" in table.output and olga in table.output

    author = {**env, "HERALD_TOKEN": provider.token([AUTHOR])}
    refused = runner.invoke(cli, ["audit", "list"], env=author)
    assert refused.exit_code == 1 and "PERMISSION_DENIED" in refused.output
