"""Who may call what: every RPC of herald.v1 with the operator roles that may call it and whether an app's API key
(or, for the inbox, an inbox token) may. This table is the one place access is decided for people; each binary's
gRPC layer enforces it before a handler runs (herald/libs/callers.py), and docs/access.md is generated from it
(`python -m herald.libs.roles`).

An app's key keeps its own scope, which the handlers check: its own messages, topics and statistics. `herald.admin`
may call every RPC an operator may; the RPCs only apps call (Send, the inbox) act as an app and take an app's key.
"""

from dataclasses import dataclass

ADMIN = "herald.admin"
OPERATOR = "herald.operator"
AUTHOR = "herald.author"
SUPPORT = "herald.support"
ANALYST = "herald.analyst"
ROLES = (ADMIN, OPERATOR, AUTHOR, SUPPORT, ANALYST)


@dataclass(frozen=True)
class Operator:
    """A person calling herald: who (a signed-in operator's JWT subject, or "admin-token") and their roles."""

    actor: str
    roles: frozenset[str]


@dataclass(frozen=True)
class Rule:
    # Operator roles that may call it: herald.admin and the others named.
    roles: frozenset[str]
    # Whether an app's API key may call it (within the app's own scope).
    apps: bool
    # Whether each call leaves an audit record (herald/libs/audit.py): every call that changes state.
    audited: bool
    # The audit record's target: {field.path}s of the request (else of the response) in a resource name.
    target: str = ""
    # The message traffic (Send, SendBatch, the inbox's MarkRead and DeleteItems): its record keeps no request - the
    # content is the message's, kept only as long as its app allows, not for the trail's year - and the call does not
    # wait for the record's publish: the message itself is durable before the call answers.
    traffic: bool = False
    # For traffic whose answer is a list (SendBatch's results): "<entries>.<path to an id>" - the record keeps each
    # entry's id, in order, and how many entries have none (refused), instead of the whole answer.
    keeps: str = ""


def _reads(*roles: str, apps: bool = False) -> Rule:
    return Rule(frozenset((ADMIN, *roles)), apps, audited=False)


def _writes(*roles: str, target: str, apps: bool = False) -> Rule:
    return Rule(frozenset((ADMIN, *roles)), apps, audited=True, target=target)


# The RPCs that act as an app: no operator role calls them.
_APP_ONLY = Rule(frozenset(), apps=True, audited=False)


def _traffic(target: str, keeps: str = "") -> Rule:
    return Rule(frozenset(), apps=True, audited=True, target=target, traffic=True, keeps=keeps)


def _app_writes(target: str) -> Rule:
    return Rule(frozenset(), apps=True, audited=True, target=target)


_APP = "apps/{app_id}"
_TEMPLATE = "templates/{template.template_id}"
_ACCOUNT = "provider-accounts/{account.name}"
_TOPIC = "apps/{app_id}/topics/{topic_key}"
_INBOX = "apps/{app_id}/users/{user_id}/inbox"

RULES: dict[str, Rule] = {
    # Apps and their keys, retention, status webhooks: operators.
    "herald.v1.AdminService/CreateApp": _writes(OPERATOR, target="apps/{app.app_id}"),
    "herald.v1.AdminService/GetApp": _reads(OPERATOR, SUPPORT, ANALYST, AUTHOR),
    "herald.v1.AdminService/ListApps": _reads(OPERATOR, SUPPORT, ANALYST, AUTHOR),
    "herald.v1.AdminService/DisableApp": _writes(OPERATOR, target=_APP),
    "herald.v1.AdminService/EnableApp": _writes(OPERATOR, target=_APP),
    "herald.v1.AdminService/RotateAppKey": _writes(OPERATOR, target=_APP),
    "herald.v1.AdminService/SetContentRetention": _writes(OPERATOR, target=_APP),
    "herald.v1.AdminService/SetStatusWebhook": _writes(OPERATOR, target="apps/{webhook.app_id}/status-webhook"),
    "herald.v1.AdminService/GetStatusWebhook": _reads(OPERATOR),
    "herald.v1.AdminService/DeleteStatusWebhook": _writes(OPERATOR, target=_APP + "/status-webhook"),
    "herald.v1.AdminService/RotateStatusWebhookSecret": _writes(OPERATOR, target=_APP + "/status-webhook"),
    # Templates: authors write the company's, an app its own (template_owners.py); support reads what was sent.
    "herald.v1.AdminService/CreateTemplate": _writes(AUTHOR, apps=True, target=_TEMPLATE),
    "herald.v1.AdminService/UpdateTemplate": _writes(AUTHOR, apps=True, target=_TEMPLATE),
    "herald.v1.AdminService/GetTemplate": _reads(AUTHOR, SUPPORT, OPERATOR, apps=True),
    "herald.v1.AdminService/ListTemplates": _reads(AUTHOR, SUPPORT, OPERATOR, apps=True),
    "herald.v1.AdminService/ArchiveTemplate": _writes(AUTHOR, apps=True, target="templates/{template_id}"),
    "herald.v1.AdminService/PreviewTemplate": _reads(AUTHOR, apps=True),
    # Dead letters and unprocessed messages: operators replay them.
    "herald.v1.DeadLetterService/ListDeadLetters": _reads(OPERATOR),
    "herald.v1.DeadLetterService/ReplayDeadLetters": _writes(OPERATOR, target="dead-letters"),
    "herald.v1.DeadLetterService/ListUnprocessedMessages": _reads(OPERATOR),
    "herald.v1.DeadLetterService/ReplayUnprocessedMessages": _writes(
        OPERATOR, target="unprocessed-messages/{consumer}"
    ),
    # The directory: operators keep it; support looks a user up.
    "herald.v1.DirectoryService/UpsertUser": _writes(OPERATOR, target="users/{user.user_id}"),
    "herald.v1.DirectoryService/GetUser": _reads(OPERATOR, SUPPORT),
    "herald.v1.DirectoryService/DeleteUser": _writes(OPERATOR, target="users/{user_id}"),
    "herald.v1.DirectoryService/ImportUsers": _writes(OPERATOR, target="users"),
    "herald.v1.DirectoryService/SetPreference": _writes(OPERATOR, target="users/{user_id}/preferences"),
    # The suppression list: operators correct it; support looks an address up. The target names the channel, not
    # the address (the record's address is masked).
    "herald.v1.SuppressionService/ListSuppressions": _reads(OPERATOR, SUPPORT),
    "herald.v1.SuppressionService/CreateSuppression": _writes(OPERATOR, target="suppressions/{suppression.channel}"),
    "herald.v1.SuppressionService/DeleteSuppression": _writes(OPERATOR, target="suppressions/{channel}"),
    # A user's inbox: the app's back end (its key) and the user's devices (an inbox token).
    "herald.v1.InboxService/Sync": _APP_ONLY,
    "herald.v1.InboxService/Subscribe": _APP_ONLY,
    "herald.v1.InboxService/MarkRead": _traffic(_INBOX),
    "herald.v1.InboxService/GetUnreadCount": _APP_ONLY,
    "herald.v1.InboxService/DeleteItems": _traffic(_INBOX),
    "herald.v1.InboxService/CreateInboxToken": _APP_ONLY,
    # Sending: apps.
    "herald.v1.MessageService/Send": _traffic("messages/{message_id}"),
    "herald.v1.MessageService/SendBatch": _traffic(_APP + "/messages", keeps="results.response.message_id"),
    "herald.v1.MessageService/SendAudience": _app_writes("messages/{message_id}"),
    "herald.v1.MessageService/CancelMessage": _app_writes("messages/{message_id}"),
    # Provider accounts: operators (support does not read credential references).
    "herald.v1.ProviderService/CreateProviderAccount": _writes(OPERATOR, target=_ACCOUNT),
    "herald.v1.ProviderService/GetProviderAccount": _reads(OPERATOR),
    "herald.v1.ProviderService/ListProviderAccounts": _reads(OPERATOR),
    "herald.v1.ProviderService/UpdateProviderAccount": _writes(OPERATOR, target=_ACCOUNT),
    "herald.v1.ProviderService/DeleteProviderAccount": _writes(OPERATOR, target="provider-accounts/{name}"),
    # Routing rules: operators; why a user would or would not get a message: support too.
    "herald.v1.RoutingService/CreateFrequencyRule": _writes(OPERATOR, target="frequency-rules/{rule_id}"),
    "herald.v1.RoutingService/ListFrequencyRules": _reads(OPERATOR, SUPPORT),
    "herald.v1.RoutingService/DeleteFrequencyRule": _writes(OPERATOR, target="frequency-rules/{rule_id}"),
    "herald.v1.RoutingService/ExplainRouting": _reads(OPERATOR, SUPPORT),
    # What happened to a message: the app, and support for any app; the numbers: the app, and analysts.
    "herald.v1.StatusService/GetMessage": _reads(SUPPORT, apps=True),
    "herald.v1.StatusService/ListDeliveries": _reads(SUPPORT, apps=True),
    "herald.v1.StatusService/SearchDeliveries": _reads(SUPPORT, apps=True),
    "herald.v1.StatusService/GetStats": _reads(ANALYST, apps=True),
    "herald.v1.StatusService/ExportEvents": _reads(ANALYST, apps=True),
    # Topics: each app's own through its key; an operator names the app.
    "herald.v1.TopicService/CreateTopic": _writes(OPERATOR, apps=True, target="apps/{app_id}/topics/{topic.topic_key}"),
    "herald.v1.TopicService/GetTopic": _reads(OPERATOR, apps=True),
    "herald.v1.TopicService/ListTopics": _reads(OPERATOR, apps=True),
    "herald.v1.TopicService/DeleteTopic": _writes(OPERATOR, apps=True, target=_TOPIC),
    "herald.v1.TopicService/AddSubscribers": _writes(OPERATOR, apps=True, target=_TOPIC),
    "herald.v1.TopicService/RemoveSubscribers": _writes(OPERATOR, apps=True, target=_TOPIC),
    "herald.v1.TopicService/ListSubscribers": _reads(OPERATOR, apps=True),
    # Who changed what: admins, operators and support.
    "herald.v1.AuditService/ListAuditEvents": _reads(OPERATOR, SUPPORT),
}


def markdown() -> str:
    """docs/access.md: the table as people read it."""
    lines = [
        "# Who may call what",
        "",
        "Generated from `herald/libs/roles.py` by `python -m herald.libs.roles > docs/access.md`; a test keeps the",
        "two the same. Operators sign in through the company's OpenID Connect provider and hold roles (the JWT's",
        "roles claim); `HERALD_ADMIN_TOKEN` is `herald.admin`. An app's API key reaches only its own app's data.",
        "A call the caller's credentials do not allow is `PERMISSION_DENIED`; a bad, expired or foreign token",
        "`UNAUTHENTICATED`. *Audited*: each call leaves one record in the audit trail",
        "(`AuditService.ListAuditEvents`), with its target; the message traffic's (Send, SendBatch, the inbox's",
        "MarkRead and DeleteItems) without the request, whose content is kept only as long as its app allows.",
        "",
        "| RPC | " + " | ".join(f"`{role}`" for role in ROLES) + " | app key | audited (target) |",
        "|---|" + "---|" * (len(ROLES) + 2),
    ]
    for method, rule in RULES.items():
        marks = ["yes" if role in rule.roles else "" for role in ROLES]
        lines.append(
            f"| `{method}` | "
            + " | ".join([*marks, "yes" if rule.apps else "", f"`{rule.target}`" if rule.audited else ""])
            + " |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
