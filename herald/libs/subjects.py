"""Every NATS subject herald's services exchange, in one place; docs/architecture.md draws the flow.

Work subjects end in the message's category ("critical", "notification",
"marketing"): each category has its own durable consumers, so a backlog in one
never queues in front of another (the priority pipelines).
"""

from herald.libs import categories

# herald's JetStream streams (libs.bus.STREAMS defines them; docs/architecture.md explains each).
MESSAGES_STREAM = "HERALD_MESSAGES"
DELIVERIES_STREAM = "HERALD_DELIVERIES"
EVENTS_STREAM = "HERALD_EVENTS"
DEAD_LETTERS_STREAM = "HERALD_DEAD_LETTERS"
SCHEDULES_STREAM = "HERALD_SCHEDULES"

# intake -> router: a message withdrawn before dispatch (AcceptedMessage).
MESSAGE_CANCELLED = "herald.message.cancelled"
# intake -> feedback: every accepted message, whatever its category.
EVERY_MESSAGE_ACCEPTED = "herald.message.accepted.>"
# router -> feedback and other teams: one delivery's state change (DeliveryEvent).
DELIVERY_EVENTS = "herald.event.delivery.>"
# router -> the member system: a user opted out of, or back into, a category (PreferenceEvent).
UNSUBSCRIBED = "herald.event.unsubscribed"
SUBSCRIBED = "herald.event.subscribed"
# router -> the member system: users subscribed to, or unsubscribed from, an app's topic (TopicSubscriptionEvent).
TOPIC_SUBSCRIBED = "herald.event.topic.subscribed"
TOPIC_UNSUBSCRIBED = "herald.event.topic.unsubscribed"
# adapters -> router, the member system: a provider said an address no longer exists (DeadAddressEvent).
ADDRESS_DEAD = "herald.event.address.dead"
# router -> the member system: an address added to or removed from the suppression list (SuppressionEvent).
SUPPRESSION_ADDED = "herald.event.suppression.added"
SUPPRESSION_REMOVED = "herald.event.suppression.removed"
# adapters -> router: a bounce, complaint, one-click unsubscribe or SMS STOP/START to record (ConsentReport).
CONSENT = "herald.message.consent"
# router -> every service (and other teams): a user erased from the directory (UserErasedEvent).
USER_ERASED = "herald.event.user.erased"
# every binary -> feedback, the security team: one call that changed (or tried to change) state (AuditEvent).
AUDIT = "herald.event.audit"


def message_accepted(category: int) -> str:
    """intake -> router, feedback: an accepted message (AcceptedMessage)."""
    return f"herald.message.accepted.{categories.name(category)}"


def message_parts(category: int) -> str:
    """intake, router -> router, feedback: a part of a large audience or of a topic's fan-out (AcceptedMessage), in
    a lane of its own, so that one app's campaign never holds another's messages behind it."""
    return f"{message_accepted(category)}.parts"


def fallback(category: int) -> str:
    """adapters -> router: a delivery failed for good; route the next channel of its chain (DeliveryJob)."""
    return f"herald.message.fallback.{categories.name(category)}"


def schedule_due(category: int) -> str:
    """NATS server -> router: a held message whose send_at arrived (AcceptedMessage)."""
    return f"herald.schedule.due.{categories.name(category)}"


def delivery_released(category: int) -> str:
    """NATS server -> router: a delivery held for quiet hours whose window ended (DeliveryJob)."""
    return f"herald.schedule.release.{categories.name(category)}"


def schedule(message_id: str, part: int) -> str:
    """Where the router holds one part of a message until its send_at; purging it withdraws the schedule."""
    return f"herald.schedule.at.{message_id}.{part}"


def held_delivery(delivery_id: str) -> str:
    """Where the router holds one delivery until the recipient's quiet hours end."""
    return f"herald.schedule.held.{delivery_id}"


def escalation(delivery_id: str) -> str:
    """Where the router holds an escalation step until its delay has passed."""
    return f"herald.schedule.escalate.{delivery_id}"


def escalations(message_id: str) -> str:
    """Every escalation step of a message still waiting (delivery ids are "<message id>.<n>")."""
    return f"herald.schedule.escalate.{message_id}.*"


def escalation_due(category: int) -> str:
    """NATS server -> router: an escalation step whose delay has passed (DeliveryJob)."""
    return f"herald.schedule.escalated.{categories.name(category)}"


def digest(key: str) -> str:
    """Where the router collects one recipient's digest (DigestCollection) until the window's end; `key` is a hash
    of the app, template, digest key, recipient and channel."""
    return f"herald.schedule.digest.{key}"


def digest_due(category: int) -> str:
    """NATS server -> router: a digest whose window ended (DigestCollection)."""
    return f"herald.schedule.digested.{categories.name(category)}"


def wake(app_id: str, user_key: str) -> str:
    """Where the adapters hold the offline push for a user's new inbox items until the collapse window ends."""
    return f"herald.schedule.wake.{app_id}.{user_key}"


def wake_due(category: int) -> str:
    """NATS server -> adapters: an offline push whose collapse window ended (DeliveryJob)."""
    return f"herald.schedule.woken.{categories.name(category)}"


def schedules(message_id: str) -> str:
    """Every part's schedule of a message, for purging them all."""
    return f"herald.schedule.at.{message_id}.>"


def delivery_job(category: int, channel: str) -> str:
    """router -> adapters: delivery jobs for one channel (libs/delivery_jobs.py)."""
    return f"herald.delivery.{categories.name(category)}.{channel}"


def delivery_event(state: str) -> str:
    return f"herald.event.delivery.{state}"


def dead_letter(category: int, channel: str) -> str:
    """adapters -> operators: a delivery that failed after its last retry, kept until replayed. An unset category
    or channel gives the wildcard that matches every one, for listing."""
    return f"herald.dead.{categories.name(category) if category else '*'}.{channel or '*'}"


def inbox(app_id: str, user_key: str) -> str:
    """Core NATS (not stored): a user's inbox changed - new items, or items read or deleted - so every adapters
    replica's live Subscribe streams for that user re-read it. `user_key` is a hash: user ids are not tokens."""
    return f"herald.inbox.{app_id}.{user_key}"


# Core NATS (not stored): ProviderService tells every herald-adapters replica to re-read the provider accounts.
PROVIDERS_CHANGED = "herald.control.providers"
# Core NATS (not stored): an app key's entry in the registry changed (app disabled, key rotated out); the payload
# is the key's hash, and every process drops it from its cache (herald/libs/auth.py).
APP_KEYS_CHANGED = "herald.control.app_keys"


def unprocessed(consumer: str) -> str:
    """Where a message that consumer could not handle after its last retry is dead-lettered
    (herald/libs/bus/consuming.py)."""
    return f"herald.unprocessed.{consumer}"
