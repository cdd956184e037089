"""What the inbox tests do over and over: an app allowed the inbox channel with a template, a batch of items for
one user, and reading a timeline the way a device does."""

import asyncio

from herald.v1 import common_pb2, inbox_service_pb2
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, Metadata

S = common_pb2


async def inbox_app(herald: Herald) -> tuple[Metadata, str]:
    _, app = await herald.create_app(("inbox",))
    return app, await herald.create_template({"inbox": "item {{ n }}"}, S.CATEGORY_NOTIFICATION)


async def send(herald: Herald, app: Metadata, template: str, user_id: str, first: int, count: int) -> None:
    requests = [
        msg.SendRequest(template_id=template, recipients=[msg.Recipient(user_id=user_id)], variables={"n": str(n)})
        for n in range(first, first + count)
    ]
    await herald.messages.SendBatch(msg.SendBatchRequest(requests=requests), metadata=app)


async def sync_all(herald: Herald, app: Metadata, user_id: str, after: int = 0) -> list[inbox_service_pb2.InboxItem]:
    """Every item after `after`, page by page, as a device catching up would fetch them."""
    items: list[inbox_service_pb2.InboxItem] = []
    while True:
        page = await herald.inbox.Sync(
            inbox_service_pb2.SyncRequest(user_id=user_id, after_seq=after, limit=1000), metadata=app
        )
        items.extend(page.items)
        if not page.items or page.items[-1].seq >= page.max_seq:
            return items
        after = page.items[-1].seq


async def wait_for_items(herald: Herald, app: Metadata, user_id: str, count: int, timeout: float = 120) -> None:
    async with asyncio.timeout(timeout):
        while (
            await herald.inbox.GetUnreadCount(inbox_service_pb2.GetUnreadCountRequest(user_id=user_id), metadata=app)
        ).max_seq < count:
            await asyncio.sleep(0.2)
