import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Protocol

import aiohttp
import pytest
from herald.v1 import common_pb2

from herald.services.adapters.channels.base import Account, Failure
from herald.services.adapters.channels.email import smtp as email_channel
from herald.services.adapters.channels.email.smtp import Smtp
from tests.adapters.channels.email.fake_smtp import PASSWORD, USERNAME, FakeSmtp
from tests.adapters.channels.email.mail import email_job, refusal

SETTINGS = {
    "from": "Herald <noreply@example.com>",
    "username": USERNAME,
    "unsubscribe_url": "https://example.com/unsubscribe?user={user_id}&delivery={delivery_id}",
}


class MakeProvider(Protocol):
    def __call__(
        self,
        *,
        settings: Mapping[str, str] = ...,
        password: str = ...,
        endpoint: str | None = ...,
        timeout: float = ...,
    ) -> Smtp: ...


@pytest.fixture
async def provider(relay: FakeSmtp, ca_file: Path, http: aiohttp.ClientSession) -> AsyncIterator[MakeProvider]:
    made: list[Smtp] = []

    def make(
        *,
        settings: Mapping[str, str] = SETTINGS,
        password: str = PASSWORD,
        endpoint: str | None = None,
        timeout: float = 5.0,
    ) -> Smtp:
        account = Account(
            name="relay-main",
            provider="smtp",
            endpoint=relay.endpoint if endpoint is None else endpoint,
            settings={"tls_ca_file": str(ca_file), **settings},
            secrets={"password": password},
            timeout=timeout,
        )
        made.append(Smtp(account, http))
        return made[-1]

    yield make
    for smtp in made:
        await smtp.close()


async def test_sends_multipart_message_after_starttls_and_login(provider: MakeProvider, relay: FakeSmtp) -> None:
    sent = await provider().send(email_job(common_pb2.CATEGORY_CRITICAL))

    [received] = relay.received
    assert received.tls and received.login == USERNAME
    assert received.mail_from == "noreply@example.com" and received.rcpt_tos == ["alice@example.org"]
    message = received.message
    assert message["From"] == "Herald <noreply@example.com>" and message["To"] == "alice@example.org"
    assert message["Subject"] == "Your sign-in code"
    assert message["Date"].datetime is not None
    assert message["Message-ID"] == "<01JB6Q3M5Z8X9K2R4T7V1W3Y5A.1@example.com>"
    assert sent.provider_message_id == message["Message-ID"]
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and text.get_content().strip() == "Your code is 424242."
    assert html is not None and html.get_content().strip() == "<p>Your code is <b>424242</b>.</p>"
    assert "List-Unsubscribe" not in message and "List-Unsubscribe-Post" not in message, "critical mail: none"


async def test_text_only_delivery_is_a_single_part(provider: MakeProvider, relay: FakeSmtp) -> None:
    await provider().send(email_job(html_body=""))

    assert relay.received[0].message.get_content_type() == "text/plain"


async def test_message_id_is_stable_per_delivery_and_the_session_is_reused(
    provider: MakeProvider, relay: FakeSmtp
) -> None:
    smtp = provider()
    first = await smtp.send(email_job())
    again = await smtp.send(email_job())
    other = await smtp.send(email_job(delivery_id="01JB6Q3M5Z8X9K2R4T7V1W3Y5A.2"))

    assert first == again != other
    assert [r.message["Message-ID"] for r in relay.received] == [
        first.provider_message_id,
        first.provider_message_id,
        other.provider_message_id,
    ]
    assert relay.connections == 1


async def test_reconnects_after_the_relay_drops_the_session(provider: MakeProvider, relay: FakeSmtp) -> None:
    smtp = provider()
    await smtp.send(email_job())
    relay.drop_sessions()
    await asyncio.sleep(0.2)

    await smtp.send(email_job())

    assert len(relay.received) == 2 and relay.connections == 2


async def test_an_idle_session_is_replaced(
    provider: MakeProvider, relay: FakeSmtp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(email_channel, "_MAX_IDLE", 0.0)
    smtp = provider()
    await smtp.send(email_job())
    await smtp.send(email_job())

    assert len(relay.received) == 2 and relay.connections == 2


async def test_marketing_carries_one_click_unsubscribe(provider: MakeProvider, relay: FakeSmtp) -> None:
    settings = {**SETTINGS, "unsubscribe_mailto": "mailto:unsubscribe@example.com?subject={delivery_id}"}
    await provider(settings=settings).send(email_job(common_pb2.CATEGORY_MARKETING))

    message = relay.received[0].message
    assert message["List-Unsubscribe"] == (
        "<https://example.com/unsubscribe?user=user%2F7&delivery=01JB6Q3M5Z8X9K2R4T7V1W3Y5A.1>, "
        "<mailto:unsubscribe@example.com?subject=01JB6Q3M5Z8X9K2R4T7V1W3Y5A.1>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize("category", [common_pb2.CATEGORY_MARKETING, common_pb2.CATEGORY_NOTIFICATION])
async def test_herald_s_own_signed_unsubscribe_url_is_used_unless_the_account_names_its_own(
    provider: MakeProvider, relay: FakeSmtp, category: common_pb2.Category.ValueType
) -> None:
    own = "https://herald.example/v1/unsubscribe/signed.token"
    settings = {k: v for k, v in SETTINGS.items() if k != "unsubscribe_url"}
    await provider(settings=settings).send(email_job(category, list_unsubscribe_url=own))
    await provider().send(email_job(category, list_unsubscribe_url=own))

    ours, accounts = (r.message for r in relay.received)
    assert ours["List-Unsubscribe"] == f"<{own}>"
    assert accounts["List-Unsubscribe"].startswith("<https://example.com/unsubscribe?user=user%2F7")
    assert ours["List-Unsubscribe-Post"] == accounts["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_marketing_without_unsubscribe_url_is_refused(provider: MakeProvider, relay: FakeSmtp) -> None:
    settings = {k: v for k, v in SETTINGS.items() if k != "unsubscribe_url"}

    error = await refusal(provider(settings=settings), email_job(common_pb2.CATEGORY_MARKETING))

    assert error.failure is Failure.PERMANENT and "unsubscribe_url" in error.reason
    assert relay.received == [] and relay.connections == 0


async def test_relay_down_is_retryable(provider: MakeProvider, relay: FakeSmtp) -> None:
    await relay.stop()

    error = await refusal(provider())

    assert error.failure is Failure.RETRYABLE and "relay-main unreachable" in error.reason


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("MAIL", "421 4.3.2 Service shutting down"),
        ("RCPT", "452 4.2.2 The email account that you tried to reach is over quota"),
        ("DATA", "451 4.3.0 Mail server temporarily rejected message"),
    ],
)
async def test_deferrals_are_retryable(provider: MakeProvider, relay: FakeSmtp, stage: str, reply: str) -> None:
    relay.replies[stage] = reply

    error = await refusal(provider())

    assert error.failure is Failure.RETRYABLE and reply in error.reason


async def test_slow_relay_times_out_and_the_next_send_reconnects(provider: MakeProvider, relay: FakeSmtp) -> None:
    smtp = provider(timeout=0.3)
    relay.delay = 1.0

    error = await refusal(smtp)

    assert error.failure is Failure.RETRYABLE and "timed out after 0.3s" in error.reason
    relay.delay = 0.0
    await smtp.send(email_job())
    assert relay.connections == 2


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("RCPT", "451 4.7.1 Please try again later"),
        ("MAIL", "421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP"),
        ("RCPT", "450 4.2.1 The user you are trying to contact is receiving mail too quickly"),
        ("DATA", "454 Throttling failure: Maximum sending rate exceeded"),
    ],
)
async def test_throttling_is_rate_limited(provider: MakeProvider, relay: FakeSmtp, stage: str, reply: str) -> None:
    relay.replies[stage] = reply

    error = await refusal(provider())

    assert error.failure is Failure.RATE_LIMITED and reply in error.reason


async def test_wrong_password_is_bad_credentials(provider: MakeProvider, relay: FakeSmtp) -> None:
    error = await refusal(provider(password="wrong"))

    assert error.failure is Failure.BAD_CREDENTIALS
    assert error.reason == "relay-main refused the login of user 'herald': 535 5.7.8 Authentication credentials invalid"
    assert relay.received == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        # The relay insists on STARTTLS (RFC 3207) and herald was told not to use it.
        ({"starttls": "none", "username": ""}, "530 Must issue a STARTTLS command first"),
        # Without the private CA the relay's certificate is not trusted: verification is on.
        ({"tls_ca_file": ""}, "certificate verify failed"),
        ({"tls_ca_file": "/nonexistent/ca.pem"}, "cannot load tls_ca_file"),
        ({"starttls": "none"}, "would send its password unencrypted"),
        ({"starttls": "optional"}, "starttls='optional'"),
        ({"from": "noreply"}, "'from' setting 'noreply' is not one address"),
    ],
)
async def test_account_misconfiguration_is_bad_credentials(
    provider: MakeProvider, relay: FakeSmtp, change: dict[str, str], words: str
) -> None:
    error = await refusal(provider(settings={**SETTINGS, **change}))

    assert error.failure is Failure.BAD_CREDENTIALS and words in error.reason
    assert relay.received == []


@pytest.mark.parametrize("endpoint", ["", "smtp.example.com", "127.0.0.1:notaport"])
async def test_an_account_must_name_its_relay(provider: MakeProvider, endpoint: str) -> None:
    # An empty endpoint means "the provider's public endpoint", and SMTP has none.
    error = await refusal(provider(endpoint=endpoint))

    assert error.failure is Failure.BAD_CREDENTIALS and "must name its relay" in error.reason


async def test_unknown_mailbox_is_a_dead_address_and_the_session_survives(
    provider: MakeProvider, relay: FakeSmtp
) -> None:
    smtp = provider()
    relay.replies["RCPT"] = "550 5.1.1 <alice@example.org>: Recipient address rejected: User unknown"

    error = await refusal(smtp)

    assert error.failure is Failure.DEAD_ADDRESS
    assert error.reason == (
        "relay-main refused the recipient: 550 5.1.1 <a***@example.org>: Recipient address rejected: User unknown"
    )
    relay.replies.clear()
    await smtp.send(email_job())
    assert relay.connections == 1


@pytest.mark.parametrize(
    ("stage", "reply", "failure"),
    [
        ("DATA", "554 5.7.1 Message rejected: content looks like spam", Failure.PERMANENT),
        ("RCPT", "553 5.1.3 Bad recipient address syntax", Failure.PERMANENT),
        # The sender is the account's own: every message of this account would be refused.
        (
            "MAIL",
            "553 5.7.1 <noreply@example.com>: Sender address rejected: not owned by user",
            Failure.BAD_CREDENTIALS,
        ),
        ("MAIL", "552 5.3.4 Message size exceeds fixed limit", Failure.PERMANENT),
    ],
)
async def test_refusals(provider: MakeProvider, relay: FakeSmtp, stage: str, reply: str, failure: Failure) -> None:
    relay.replies[stage] = reply

    error = await refusal(provider())

    assert error.failure is failure
    assert reply[:9] in error.reason and error.reason.endswith(reply.rsplit(": ", 1)[-1])


@pytest.mark.parametrize("address", ["not-an-address", "alice@example.org, mallory@example.net", "a@b.org\r\nBcc: x@y"])
async def test_malformed_address_is_permanent_and_never_sent(
    provider: MakeProvider, relay: FakeSmtp, address: str
) -> None:
    error = await refusal(provider(), email_job(address=address))

    assert error.failure is Failure.PERMANENT and "is not one e-mail address" in error.reason
    assert relay.connections == 0
