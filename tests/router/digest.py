"""What the digest tests share: an inbox template that collects a window's sends into one item, and reading it."""

import uuid

from google.protobuf import duration_pb2
from herald.v1 import admin_service_pb2, common_pb2, inbox_service_pb2
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, Metadata

S = common_pb2


async def digest_template(herald: Herald, window: int) -> str:
    template_id = f"t-{uuid.uuid4().hex[:10]}"
    template = admin_service_pb2.Template(
        template_id=template_id,
        category=S.CATEGORY_NOTIFICATION,
        contents=[
            S.ChannelContent(
                channel="inbox",
                subject="{{ count }} comments on {{ doc }}",
                body="{% for i in items %}{{ i.who }};{% endfor %}",
            )
        ],
        offline_push=admin_service_pb2.OFFLINE_PUSH_DISABLED,
        digest=admin_service_pb2.Digest(window=duration_pb2.Duration(seconds=window), key="doc"),
    )
    await herald.admin_stub.CreateTemplate(
        admin_service_pb2.CreateTemplateRequest(template=template), metadata=herald.admin
    )
    return template_id


async def comment(herald: Herald, app: Metadata, template: str, user_id: str, who: str, doc: str = "plan") -> str:
    return await herald.send(
        app,
        msg.SendRequest(
            template_id=template, recipients=[msg.Recipient(user_id=user_id)], variables={"who": who, "doc": doc}
        ),
    )


async def inbox(herald: Herald, app: Metadata, user_id: str) -> list[inbox_service_pb2.InboxItem]:
    return list((await herald.inbox.Sync(inbox_service_pb2.SyncRequest(user_id=user_id), metadata=app)).items)
