"""The e-mail message every e-mail provider sends, composed once: sender and recipient checked, headers, text and
HTML parts, and RFC 8058 one-click unsubscribe.

One-click unsubscribe (`List-Unsubscribe` + `List-Unsubscribe-Post: List-Unsubscribe=One-Click`), which Gmail
and Yahoo require of bulk senders, goes on marketing and notification mail, never on critical mail (a login
code must not invite the reader to refuse the next one). The URL is herald's own endpoint by default
(DeliveryJob.list_unsubscribe_url, signed per recipient and category by the adapters, unsubscribe.py); an account
may point at the company's own endpoint instead (`unsubscribe_url`, an https template taking {user_id} and
{delivery_id}) and add a mailto: (`unsubscribe_mailto`, the same placeholders). Marketing mail with neither is
refused rather than sent where those receivers block or bin it.
"""

from datetime import UTC, datetime
from email import errors as email_errors
from email import policy
from email.headerregistry import Address, AddressHeader
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import quote

from herald.v1 import common_pb2

from herald.internal.v1 import work_pb2
from herald.libs.masking import mask
from herald.services.adapters.channels.base import Account, DeliveryError, Failure


def sender(account: Account) -> Address:
    value = account.setting("from")
    header = policy.default.header_factory("From", value)
    if not header.defects and isinstance(header, AddressHeader) and len(header.addresses) == 1:
        found = header.addresses[0]
        if found.domain:
            return found
    raise DeliveryError(
        f"account {account.name} 'from' setting {value!r} is not one address like 'Herald <noreply@example.com>'",
        Failure.BAD_CREDENTIALS,
    )


def recipient(address: str) -> Address:
    """Exactly one mailbox: a list or a header smuggled into the address must not add recipients."""
    try:
        return Address(addr_spec=address)
    except (ValueError, IndexError, email_errors.HeaderParseError) as e:
        raise DeliveryError(f"{mask(address)!r} is not one e-mail address: {e}", Failure.PERMANENT) from e


def subject(job: work_pb2.DeliveryJob) -> str:
    """A header cannot hold a line break; a template's stray newline must not cost the delivery."""
    return " ".join(job.subject.split())


def compose(account: Account, job: work_pb2.DeliveryJob, from_: Address, to: Address) -> EmailMessage:
    message = EmailMessage()
    message["From"] = from_
    message["To"] = to
    message["Subject"] = subject(job)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = f"<{job.delivery_id}@{from_.domain}>"
    for name, value in list_unsubscribe(account, job).items():
        message[name] = value
    message.set_content(job.body)
    if job.html_body:
        message.add_alternative(job.html_body, subtype="html")
    return message


def list_unsubscribe(account: Account, job: work_pb2.DeliveryJob) -> dict[str, str]:
    """The one-click unsubscribe headers this delivery carries; none for critical mail."""
    if job.category == common_pb2.CATEGORY_CRITICAL:
        return {}
    own = account.settings.get("unsubscribe_url", "")
    if own and not own.startswith("https://"):
        raise DeliveryError(
            f"account {account.name} 'unsubscribe_url' must be an https URL (RFC 8058)", Failure.BAD_CREDENTIALS
        )
    if not (own or job.list_unsubscribe_url):
        if job.category == common_pb2.CATEGORY_MARKETING:
            raise DeliveryError(
                f"account {account.name} has no 'unsubscribe_url' and herald's unsubscribe endpoint is off "
                "(HERALD_TRACKING_URL, HERALD_UNSUBSCRIBE_SECRET): marketing mail needs one-click unsubscribe "
                "(RFC 8058; Gmail and Yahoo block bulk mail without it)",
                Failure.PERMANENT,
            )
        return {}
    # The account's templates are filled in; herald's own URL is complete as it is.
    templates = [own] if own else []
    mailto = account.settings.get("unsubscribe_mailto", "")
    if mailto:
        templates.append(mailto if mailto.startswith("mailto:") else f"mailto:{mailto}")
    values = {"user_id": quote(job.user_id, safe=""), "delivery_id": quote(job.delivery_id, safe="")}
    try:
        filled = ([] if own else [job.list_unsubscribe_url]) + [uri.format_map(values) for uri in templates]
    except (KeyError, IndexError, ValueError) as e:
        raise DeliveryError(
            f"account {account.name} unsubscribe template is invalid ({e!r}): "
            "only {user_id} and {delivery_id} may be used",
            Failure.PERMANENT,
        ) from e
    return {
        "List-Unsubscribe": ", ".join(f"<{uri}>" for uri in filled),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
