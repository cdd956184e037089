"""Every NATS subject herald's services exchange, in one place; docs/architecture.md draws the flow."""

# intake -> router, feedback: an accepted message (AcceptedMessage).
MESSAGE_ACCEPTED = "herald.message.accepted"
# intake -> router: a message withdrawn before dispatch (AcceptedMessage).
MESSAGE_CANCELLED = "herald.message.cancelled"
# NATS server -> router: a held message whose send_at arrived (AcceptedMessage).
SCHEDULE_DUE = "herald.schedule.due"
# NATS server -> router: a delivery held for quiet hours whose window ended (DeliveryJob).
DELIVERY_RELEASED = "herald.schedule.release"
# router -> feedback and other teams: one delivery's state change (DeliveryEvent).
DELIVERY_EVENTS = "herald.event.delivery.>"
# router -> the member system: a user opted out of, or back into, a category (PreferenceEvent).
UNSUBSCRIBED = "herald.event.unsubscribed"
SUBSCRIBED = "herald.event.subscribed"


def schedule(message_id: str, part: int) -> str:
    """Where the router holds one part of a message until its send_at; purging it withdraws the schedule."""
    return f"herald.schedule.at.{message_id}.{part}"


def held_delivery(delivery_id: str) -> str:
    """Where the router holds one delivery until the recipient's quiet hours end."""
    return f"herald.schedule.held.{delivery_id}"


def schedules(message_id: str) -> str:
    """Every part's schedule of a message, for purging them all."""
    return f"herald.schedule.at.{message_id}.>"


def delivery_job(channel: str) -> str:
    """router -> adapters: one DeliveryJob for one channel."""
    return f"herald.delivery.{channel}"


def delivery_event(state: str) -> str:
    return f"herald.event.delivery.{state}"
