"""A provider saying an address no longer exists (here a revoked Slack webhook) marks it dead in the directory:
later messages do not try it, say why, and a new address for the user replaces the mark."""

import asyncio
import uuid

from herald.v1 import common_pb2, status_service_pb2
from herald.v1 import directory_service_pb2 as directory
from herald.v1 import message_service_pb2 as msg
from herald.v1 import provider_service_pb2 as pb
from herald.v1 import routing_service_pb2 as routing

from tests.adapters.channels.slack.fake_slack_webhook import FakeSlack, Hook, State
from tests.helpers.client import Herald, Metadata, all_final

S = common_pb2


async def _delivery(herald: Herald, app: Metadata, template: str, user_id: str) -> status_service_pb2.Delivery:
    request = msg.SendRequest(template_id=template, recipients=[msg.Recipient(user_id=user_id)])
    return (await herald.wait_message(app, await herald.send(app, request), all_final)).deliveries[0]


async def _upsert(herald: Herald, user_id: str, hook: str) -> None:
    user = directory.User(user_id=user_id, addresses={"slack": hook})
    await herald.directory.UpsertUser(directory.UpsertUserRequest(user=user), metadata=herald.admin)


async def test_a_revoked_webhook_is_not_tried_again_until_the_user_has_a_new_one(herald: Herald) -> None:
    async with FakeSlack() as slack:
        account = pb.ProviderAccount(name=f"slack-{uuid.uuid4().hex[:6]}", provider="slack_webhook", endpoint=slack.url)
        await herald.providers.CreateProviderAccount(
            pb.CreateProviderAccountRequest(account=account), metadata=herald.admin
        )
        try:
            app_id, app = await herald.create_app(("slack",))
            template = await herald.create_template({"slack": "deploy finished"}, S.CATEGORY_CRITICAL)
            user_id = f"u-{uuid.uuid4().hex[:8]}"
            revoked = Hook(state=State.REVOKED)
            await _upsert(herald, user_id, slack.add_hook(revoked))

            first = await _delivery(herald, app, template, user_id)
            assert first.state == S.DELIVERY_STATE_FAILED
            assert 'Slack answered HTTP 403 "invalid_token"' in first.reason
            assert len(slack.received) == 1

            async with asyncio.timeout(10):  # the router marks it from the adapters' event
                while True:
                    second = await _delivery(herald, app, template, user_id)
                    if second.state == S.DELIVERY_STATE_SUPPRESSED:
                        break
                    await asyncio.sleep(0.2)
            assert "the directory's was reported dead at" in second.reason
            assert "invalid_token" in second.reason
            explained = await herald.routing.ExplainRouting(
                routing.ExplainRoutingRequest(app_id=app_id, template_id=template, user_id=user_id),
                metadata=herald.admin,
            )
            [verdict] = explained.verdicts
            assert verdict.reason == second.reason
            calls = len(slack.received)

            active = Hook()
            await _upsert(herald, user_id, slack.add_hook(active))
            third = await _delivery(herald, app, template, user_id)
            assert third.state == S.DELIVERY_STATE_SENT
            assert len(slack.received) == calls + 1 and len(active.posted) == 1
        finally:
            await herald.providers.DeleteProviderAccount(
                pb.DeleteProviderAccountRequest(name=account.name), metadata=herald.admin
            )
