"""Twilio Programmable Messaging, "Create a Message": POST /2010-04-01/Accounts/{AccountSid}/Messages.json.

Twilio authenticates with HTTP basic auth (AccountSid:AuthToken) and answers 201 with the Message resource;
its `sid` is what delivery receipts (StatusCallback) name later. Errors are JSON {code, message, more_info,
status}: Twilio's numeric code is more precise than the HTTP status, so where herald knows it, it decides.

Delivery receipts: with the account's `status_callback_url` setting, each message asks Twilio to POST its
status changes there (form-encoded, signed in X-Twilio-Signature: Base64(HMAC-SHA1(AuthToken, URL + every
parameter's name and value, sorted by name))). That URL is herald's `/v1/receipts/<account>` as the provider
reaches it; Twilio signs the URL it was given, so herald checks against the same setting.

Replies: with the account's `inbound_url` setting (herald's `/v1/inbound/<account>`, set as the number's or the
Messaging Service's incoming-message webhook), the texts recipients send arrive signed the same way (From, Body);
herald answers with TwiML, whose <Message> Twilio texts back (sms_replies.py reads STOP, START and HELP).

Not idempotent: the Messages API takes no idempotency key (Twilio's I-Twilio-Idempotency-Token travels only
the other way, on the webhooks Twilio sends), so calling twice sends two texts.
"""

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from herald.internal.v1 import work_pb2
from herald.libs.masking import mask
from herald.services.adapters.channels import http
from herald.services.adapters.channels.base import (
    Callback,
    DeliveryError,
    Failure,
    InboundText,
    Provider,
    Receipt,
    ReceiptRefused,
    Receipts,
    Sent,
)

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

# Final statuses of a status callback; the others (queued, sending, sent, ...) are steps on the way.
_RECEIPT_DELIVERED = {"delivered": True, "read": True, "undelivered": False, "failed": False}
# https://www.twilio.com/docs/sms/troubleshooting/debugging-tools: the codes an undelivered message carries most.
_UNDELIVERED = {
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "message filtered by the carrier",
    "30008": "unknown error",
}


def signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    signed = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


class Twilio(Provider):
    channel = "sms"

    async def send(self, job: work_pb2.DeliveryJob) -> Sent:
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

    async def receipts(self, callback: Callback) -> Receipts:
        form = self._signed_form(callback, "status_callback_url")
        status = form.get("MessageStatus", "")
        if not form.get("MessageSid") or status not in _RECEIPT_DELIVERED:
            return Receipts([])
        delivered = _RECEIPT_DELIVERED[status]
        reason = ""
        if not delivered:
            code = form.get("ErrorCode", "")
            meaning = f" ({_UNDELIVERED[code]})" if code in _UNDELIVERED else ""
            reason = f"{self.account.name}: Twilio reported the message {status}, error {code or 'none'}{meaning}"
        return Receipts([Receipt(form["MessageSid"], delivered, reason)])

    def inbound(self, callback: Callback) -> InboundText:
        form = self._signed_form(callback, "inbound_url")
        if not form.get("From"):
            raise ReceiptRefused("an inbound message without From")
        return InboundText(sender=form["From"], text=form.get("Body", ""))

    def reply(self, text: str) -> Receipts:
        """TwiML: Twilio texts each <Message> back to the sender; an empty <Response/> sends nothing."""
        said = f"<Message>{escape(text)}</Message>" if text else ""
        return Receipts([], f'<?xml version="1.0" encoding="UTF-8"?><Response>{said}</Response>', "text/xml")

    def _signed_form(self, callback: Callback, url_setting: str) -> dict[str, str]:
        """The form Twilio posted to the URL in `url_setting`, once its X-Twilio-Signature is checked: Twilio signs
        the URL it was given, so herald checks against the same setting."""
        url = self.account.settings.get(url_setting, "")
        token = self.account.secrets.get("auth_token", "")
        if not url or not token:
            raise ReceiptRefused(f"account {self.account.name} has no {url_setting} or auth_token")
        params = parse_qsl(callback.body.decode(errors="replace"), keep_blank_values=True)
        given = callback.headers.get("x-twilio-signature", "")
        if not hmac.compare_digest(given.encode(), signature(token, url, params).encode()):
            raise ReceiptRefused("X-Twilio-Signature does not match")
        return dict(params)

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
