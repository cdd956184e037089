"""What a Send becomes: every check that can refuse it, asked before anything is stored, then the AcceptedMessage
it is queued as; and whether the app's rate limit lets it through."""

from typing import Protocol

from herald.v1 import admin_service_pb2
from herald.v1 import message_service_pb2 as pb

from herald.internal.v1 import work_pb2
from herald.libs import channels
from herald.libs.auth import AppIdentity
from herald.libs.errors import InvalidArgument, NotFound, ResourceExhausted
from herald.services.intake import message_ids, template_owners
from herald.services.intake.common_part import CommonPart
from herald.services.intake.validation import check_shape, choose_channels, render_check

# What one accepted message may weigh on the bus (NATS refuses payloads over 1 MiB by default).
MAX_MESSAGE_BYTES = 512 * 1024


# At least the bytes an accepted message has beyond its common part and what it copies from its request (whose
# fields take tags of the same size): its id, its channels (known ones, at most all of them) and channels_named.
# With these, a message whose size could pass the limit is told from the rest without measuring it, which cost
# intake a twentieth of its CPU per message.
ADDED_BYTES = (3 + message_ids.ID_CHARS) + sum(2 + len(channel) for channel in channels.KNOWN) + 2


class RateLimited(ResourceExhausted):
    """Over the app's own rate limit."""

    cause = "rate_limited"


class Topics(Protocol):
    async def exists(self, app_id: str, topic_key: str) -> bool: ...


class Templates(Protocol):
    async def latest_for_sending(self, template_id: str) -> admin_service_pb2.Template: ...


class Shedder(Protocol):
    def check(self, category: int) -> None: ...


class Ids(Protocol):
    def new(self, app_id: str) -> str: ...


class Limiter(Protocol):
    async def take(self, key: str, rate: float, wanted: int) -> tuple[int, float]: ...


class Acceptance:
    def __init__(self, templates: Templates, topics: Topics, shedder: Shedder, ids: Ids, limiter: Limiter) -> None:
        self._templates = templates
        self._topics = topics
        self._shedder = shedder
        self._ids = ids
        self._limiter = limiter

    async def prepare(self, app: AppIdentity, request: pb.SendRequest, common: CommonPart) -> work_pb2.AcceptedMessage:
        """Everything that can refuse a Send, before anything is stored; then the message as it is queued."""
        request_bytes = check_shape(request)
        if request.topic and not await self._topics.exists(app.app_id, request.topic):
            raise NotFound(f"topic '{request.topic}' not found (TopicService.CreateTopic makes one)")
        template = await self._templates.latest_for_sending(request.template_id)
        template_owners.check_sender(template, app.app_id)
        app.check_category(template.category)
        self._shedder.check(template.category)
        chosen = choose_channels(request, template, app)
        render_check(request, template, chosen)
        accepted = common.message(template)
        accepted.message_id = self._ids.new(app.app_id)
        accepted.recipients.MergeFrom(request.recipients)
        variables, given = accepted.variables, request.variables
        for name in given:  # a map's MergeFrom goes through MutableMapping.update, at twice the cost
            variables[name] = given[name]
        accepted.channels.extend(chosen)
        accepted.channels_named = bool(request.channels)
        accepted.topic = request.topic
        for when in ("send_at", "expire_at"):
            if request.HasField(when):
                getattr(accepted, when).CopyFrom(getattr(request, when))
        if common.size(template) + request_bytes + ADDED_BYTES > MAX_MESSAGE_BYTES and (
            (size := accepted.ByteSize()) > MAX_MESSAGE_BYTES
        ):
            raise InvalidArgument(
                {"recipients": f"the message is {size} bytes with its template; at most {MAX_MESSAGE_BYTES}: split it"}
            )
        return accepted

    async def admit(self, app: AppIdentity, count: int) -> tuple[int, RateLimited | None]:
        """How many of `count` messages the app's rate limit lets through now, and the refusal for the rest."""
        granted, retry_after = await self._limiter.take(app.app_id, app.rate_limit_per_second, count)
        if granted >= count:
            return granted, None
        message = (
            f"app {app.app_id} is over its rate limit of {app.rate_limit_per_second:g} messages/s; "
            f"retry in {retry_after:.2f}s"
        )
        return granted, RateLimited(message, retry_after)
