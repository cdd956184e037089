"""What the deliverability tests share: names for accounts on the fake providers, e-mail templates for every category,
a directory user, and one send's final delivery."""

import uuid

from herald.v1 import admin_service_pb2 as admin
from herald.v1 import common_pb2, status_service_pb2
from herald.v1 import directory_service_pb2 as directory
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, Metadata, all_final

S = common_pb2
# The variable the test mesh holds every fake provider's credential in (tests/conftest.py, PROVIDER_ENV).
CREDENTIAL = "HERALD_PROVIDER_TEST_SECRET"


def account_name(provider: str) -> str:
    return f"{provider}-{uuid.uuid4().hex[:6]}"


async def email_templates(herald: Herald) -> dict[int, str]:
    """One e-mail template per category: its id."""
    made: dict[int, str] = {}
    for category in (S.CATEGORY_CRITICAL, S.CATEGORY_NOTIFICATION, S.CATEGORY_MARKETING):
        template_id = f"t-{uuid.uuid4().hex[:10]}"
        content = S.ChannelContent(channel="email", subject="Hello", body="Hello {{ name }}", html_body="<p>Hello</p>")
        template = admin.Template(template_id=template_id, category=category, contents=[content])
        await herald.admin_stub.CreateTemplate(admin.CreateTemplateRequest(template=template), metadata=herald.admin)
        made[category] = template_id
    return made


async def user_with(herald: Herald, channel: str, address: str) -> str:
    user_id = f"u-{uuid.uuid4().hex[:10]}"
    user = directory.User(user_id=user_id, addresses={channel: address})
    await herald.directory.UpsertUser(directory.UpsertUserRequest(user=user), metadata=herald.admin)
    return user_id


async def mail_sender(herald: Herald, address: str) -> tuple[Metadata, dict[int, str], str]:
    """An app that sends e-mail, its templates by category, and a directory user at `address`: its key, the
    templates and the user id."""
    _, app = await herald.create_app(("email",))
    return app, await email_templates(herald), await user_with(herald, "email", address)


async def delivered(
    herald: Herald, app: Metadata, template: str, recipient: msg.Recipient
) -> status_service_pb2.Delivery:
    """The delivery of one send, once final."""
    request = msg.SendRequest(template_id=template, recipients=[recipient], variables={"name": "Ada", "code": "7"})
    message_id = await herald.send(app, request)
    [delivery] = (await herald.wait_message(app, message_id, all_final)).deliveries
    return delivery
