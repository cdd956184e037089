"""The delivery every e-mail plug-in's tests send, and the refusal they expect of it."""

from herald.v1 import common_pb2

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels.base import DeliveryError, Provider

TO = "alice@example.org"


def email_job(
    category: common_pb2.Category.ValueType = common_pb2.CATEGORY_NOTIFICATION,
    *,
    delivery_id: str = "01JB6Q3M5Z8X9K2R4T7V1W3Y5A.1",
    address: str = TO,
    html_body: str = "<p>Your code is <b>424242</b>.</p>",
    list_unsubscribe_url: str = "",
) -> work_pb2.DeliveryJob:
    """A sign-in code mail to `address`; its subject ends in a stray newline, as a template's may."""
    return work_pb2.DeliveryJob(
        delivery_id=delivery_id,
        message_id=delivery_id.split(".")[0],
        category=category,
        user_id="user/7",
        channel="email",
        address=address,
        subject="Your sign-in code\n",
        body="Your code is 424242.",
        html_body=html_body,
        list_unsubscribe_url=list_unsubscribe_url,
    )


async def refusal(provider: Provider, job: work_pb2.DeliveryJob | None = None) -> DeliveryError:
    """The DeliveryError the provider must raise for `job` (the default mail when None)."""
    try:
        await provider.send(job or email_job())
    except DeliveryError as e:
        return e
    raise AssertionError("the provider took the mail")
