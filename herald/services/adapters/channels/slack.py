"""The slack channel: Slack incoming webhooks.

The address is the webhook URL (https://hooks.slack.com/services/...), which is its own secret: there is no
signing and no account credential, so a refusal is about the webhook, never the account. It must be on the
account's endpoint (Slack's by default). Slack answers in plain text: "ok", or an error word with an HTTP
status.
Wire format and errors: https://api.slack.com/messaging/webhooks#handling_errors
"""

from typing import Any

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels import http, robots
from herald.services.adapters.channels.base import DeliveryError, Failure, Provider, Sent

DEFAULT_ENDPOINT = "https://hooks.slack.com"
# The webhook, its channel or its workspace is gone for good; invalid_token is a revoked webhook URL.
_GONE = frozenset(
    {"no_service", "channel_not_found", "channel_is_archived", "team_disabled", "no_active_hooks", "invalid_token"}
)
# Block Kit limits: a header's text, a section's text.
_HEADER_MAX = 150
_SECTION_MAX = 3000


class SlackWebhook(Provider):
    channel = "slack"

    async def send(self, job: work_pb2.DeliveryJob) -> Sent:
        url = robots.webhook_url(self.account, DEFAULT_ENDPOINT, job.address, "/services/")
        response = await http.call(self, "POST", url, json_body=_message(job))
        if response.ok:
            # An incoming webhook's answer carries no message id.
            return Sent()
        said = response.body.decode(errors="replace").strip()[:200]
        if said in _GONE:
            raise DeliveryError(
                f'{self.account.name}: Slack answered HTTP {response.status} "{said}"; '
                "the webhook no longer works: ask for a new webhook URL",
                Failure.DEAD_ADDRESS,
            )
        error = http.status_error(f"{self.account.name} (Slack)", response, said)
        if error.failure is Failure.BAD_CREDENTIALS:
            # action_prohibited, posting_to_general_channel_denied: the workspace restricts this webhook.
            raise DeliveryError(error.reason, Failure.PERMANENT)
        raise error


def _message(job: work_pb2.DeliveryJob) -> dict[str, Any]:
    if not job.subject:
        return {"text": job.body}
    sections = [job.body[i : i + _SECTION_MAX] for i in range(0, len(job.body), _SECTION_MAX)]
    return {
        # Shown in notifications, where blocks are not.
        "text": f"{job.subject}\n{job.body}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": job.subject[:_HEADER_MAX]}},
            *({"type": "section", "text": {"type": "mrkdwn", "text": s}} for s in sections),
        ],
    }
