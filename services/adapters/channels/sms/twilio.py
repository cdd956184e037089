"""Twilio Programmable Messaging, "Create a Message": POST /2010-04-01/Accounts/{AccountSid}/Messages.json.

Twilio authenticates with HTTP basic auth (AccountSid:AuthToken) and answers 201 with the Message resource;
its `sid` is what delivery receipts (StatusCallback) name later. Errors are JSON {code, message, more_info,
status}: Twilio's numeric code is more precise than the HTTP status, so where herald knows it, it decides.

Not idempotent: the Messages API takes no idempotency key (Twilio's I-Twilio-Idempotency-Token travels only
the other way, on the webhooks Twilio sends), so calling twice sends two texts.
"""

import base64
from typing import Any

from herald.v1 import events_pb2

from libs.masking import mask
from services.adapters.channels import http
from services.adapters.channels.base import DeliveryError, Failure, Provider, Sent

DEFAULT_ENDPOINT = "https://api.twilio.com"

# https://www.twilio.com/docs/api/errors; a code not listed here keeps the meaning of its HTTP status.
_FAILURES = {
    20003: Failure.BAD_CREDENTIALS,  # AccountSid or AuthToken refused
    20429: Failure.RATE_LIMITED,  # too many requests
    21211: Failure.PERMANENT,  # invalid 'To' phone number
    21408: Failure.PERMANENT,  # the account may not send to the 'To' number's region
    21610: Failure.PERMANENT,  # the recipient replied STOP
    21614: Failure.PERMANENT,  # 'To' is not a mobile number
    # The account's sender cannot send at all: its owner must fix it, another account may work meanwhile.
    21212: Failure.BAD_CREDENTIALS,  # invalid 'From' number
    21606: Failure.BAD_CREDENTIALS,  # 'From' is not an SMS-capable number of this account
}


class Twilio(Provider):
    channel = "sms"

    async def send(self, job: events_pb2.DeliveryJob) -> Sent:
        account = self.account
        sid = account.setting("account_sid")
        form = {"To": job.address, "Body": job.body, **self._sender()}
        if callback := account.settings.get("status_callback_url", ""):
            form["StatusCallback"] = callback
        credentials = base64.b64encode(f"{sid}:{account.secret('auth_token')}".encode()).decode()
        response = await http.call(
            self,
            "POST",
            f"{account.url(DEFAULT_ENDPOINT)}/2010-04-01/Accounts/{sid}/Messages.json",
            headers={"Authorization": f"Basic {credentials}"},
            data=form,
        )
        answer = response.json()
        if response.ok:
            return Sent(provider_message_id=str(answer.get("sid", "")))
        raise self._error(response, answer)

    def _sender(self) -> dict[str, str]:
        """A Messaging Service picks the sender itself; a plain number is sent as From. Either will do."""
        settings = self.account.settings
        sender = {
            field: settings[key]
            for field, key in (("MessagingServiceSid", "messaging_service_sid"), ("From", "from"))
            if settings.get(key)
        }
        if not sender:
            raise DeliveryError(
                f"account {self.account.name} has neither a 'from' nor a 'messaging_service_sid' setting",
                Failure.BAD_CREDENTIALS,
            )
        return sender

    def _error(self, response: http.Response, answer: Any) -> DeliveryError:
        code = answer.get("code")
        # Twilio's messages quote the 'To' number.
        said = mask(" - ".join(str(answer[k]) for k in ("message", "detail") if answer.get(k)))
        if not isinstance(code, int):
            return http.status_error(self.account.name, response, said)
        more = f" (see {answer['more_info']})" if answer.get("more_info") else ""
        generic = http.status_error(self.account.name, response, f"Twilio error {code}: {said}{more}")
        failure = _FAILURES.get(code, generic.failure)
        retry_after = response.retry_after() if failure is Failure.RATE_LIMITED else generic.retry_after
        return DeliveryError(generic.reason, failure, retry_after=retry_after)
