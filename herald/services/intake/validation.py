"""What makes a Send acceptable: its shape, its channels, and that it renders for every recipient.

Limits are documented in docs/decisions.md; every refusal names the request fields at fault.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from herald.v1 import admin_service_pb2, common_pb2
from herald.v1 import message_service_pb2 as pb

from herald.libs import channels, ids, storable, template_sandbox, templating
from herald.libs.auth import AppIdentity
from herald.libs.errors import InvalidArgument
from herald.libs.timeutil import now, timestamp_field

MAX_SCHEDULE_AHEAD = timedelta(days=365)
MAX_RECIPIENTS = 1000
MAX_VARIABLE_CHARS = 4096
MAX_VARIABLES = 100
MAX_USER_ID_CHARS = 200
# What one recipient's rendered contents may weigh in all: a delivery job carries them, and NATS refuses
# messages over 1 MiB.
MAX_RENDERED_BYTES = 512 * 1024


def check_shape(request: pb.SendRequest) -> int:
    """Refuse a request of the wrong shape, naming every field at fault; otherwise its encoded size."""
    encoded = request.SerializeToString()
    bad: dict[str, str] = {}
    if not request.template_id:
        bad["template_id"] = "required"
    if request.topic:
        if not ids.CHOSEN_KEY.match(request.topic):
            bad["topic"] = ids.CHOSEN_KEY_RULE
        if request.recipients:
            bad["recipients"] = "a Send to a topic goes to its subscribers: give no recipients"
    elif not request.recipients:
        bad["recipients"] = "at least one recipient is required (or a topic)"
    elif len(request.recipients) > MAX_RECIPIENTS:
        bad["recipients"] = f"{len(request.recipients)} recipients; at most {MAX_RECIPIENTS} per Send"
    # A string takes at least as many bytes in the encoding as it has characters: a small request holds no value
    # too long, and its values need not be measured one by one.
    measure = len(encoded) > MAX_VARIABLE_CHARS
    _check_variables(request.variables, None, bad, measure)
    for i, recipient in enumerate(request.recipients[:MAX_RECIPIENTS]):
        if not recipient.user_id and not recipient.addresses:
            bad[f"recipients[{i}]"] = "give a user_id, addresses, or both"
        if len(recipient.user_id) > MAX_USER_ID_CHARS:
            bad[f"recipients[{i}].user_id"] = f"at most {MAX_USER_ID_CHARS} characters"
        addresses = recipient.addresses
        for channel in addresses:  # a protobuf map's own iteration: its Mapping views are far slower
            if why := channels.problem(channel) or channels.address_problem(channel, addresses[channel]):
                bad[f"recipients[{i}].addresses[{channel[:40]}]"] = why
        _check_variables(recipient.variables, i, bad, measure)
    for i, channel in enumerate(request.channels):
        if why := channels.problem(channel):
            bad[f"channels[{i}]"] = why
    expire_at = timestamp_field(request, "expire_at", bad)
    if expire_at and expire_at <= now():
        bad["expire_at"] = "is in the past: the message could never be delivered"
    send_at = timestamp_field(request, "send_at", bad)
    if send_at and expire_at and send_at >= expire_at:
        bad["send_at"] = "is not before expire_at"
    if send_at and send_at > now() + MAX_SCHEDULE_AHEAD:
        bad["send_at"] = "at most 365 days ahead"
    if len(request.idempotency_key) > 200:
        bad["idempotency_key"] = "at most 200 characters"
    bad.update(storable.nul_refusals(request, encoded=encoded))
    if bad:
        raise InvalidArgument(bad)
    return len(encoded)


def _check_variables(values: Mapping[str, str], recipient: int | None, bad: dict[str, str], measure: bool) -> None:
    """The request's variables, or its `recipient`-th recipient's."""
    if len(values) > MAX_VARIABLES:
        bad[_variables_field(recipient)] = f"at most {MAX_VARIABLES} variables"
    if measure:
        for name in values:
            if len(values[name]) > MAX_VARIABLE_CHARS:
                bad[f"{_variables_field(recipient)}[{name[:40]}]"] = f"at most {MAX_VARIABLE_CHARS} characters"


def _variables_field(recipient: int | None) -> str:
    """Named only for a refusal: most maps pass, and a name is a string to build."""
    return "variables" if recipient is None else f"recipients[{recipient}].variables"


def choose_channels(request: pb.SendRequest, template: admin_service_pb2.Template, app: AppIdentity) -> list[str]:
    requested = tuple(request.channels)
    key = (template.template_id, template.version, requested)
    chosen = _kept(_chosen, key, lambda: channels.choose(template, requested))
    for channel in chosen:
        app.check_channel(channel)
    return chosen


@dataclass(frozen=True)
class _RenderPlan:
    """What render_check needs of a template version's contents for the chosen channels, worked out once."""

    contents: list[common_pb2.ChannelContent]
    needed: frozenset[str]
    # Per content, its channel and each part's templating.substitutions with how much escaping may grow a variable
    # (templating.ESCAPE_GROWTH); None when some content must be rendered.
    sized: list[tuple[str, list[tuple[int, tuple[str, ...], int]]]] | None
    # The most characters a recipient's values may hold in all for every content to fit whatever they are (each
    # variable as long as all of them); -1 when some content must be rendered.
    slack: int

    def surely_fits(self, values: dict[str, str]) -> bool:
        """Whether every content renders within the limits for these values (which hold every needed variable),
        known without rendering: each part at most as long as its text and its escaped variables, at most 4 UTF-8
        bytes a character. Most values are well within the plan's slack, which one sum tells."""
        if sum(map(len, values.values())) <= self.slack:
            return True
        return self.sized is not None and _fits(self.sized, lambda used: sum(len(values[name]) for name in used))


# More than the bytes protobuf adds to a rendered content and to each of its parts (tags, lengths, channel, locale).
PROTO_OVERHEAD = 128
# Template versions never change, so what is worked out from one is kept (as many as this, then started afresh):
# per (template id, version, channels), its render plan, and the channels a request's channels come to.
_KEPT = 1024
_plans: dict[tuple[str, int, tuple[str, ...]], _RenderPlan] = {}
_chosen: dict[tuple[str, int, tuple[str, ...]], list[str]] = {}
K = TypeVar("K")
V = TypeVar("V")


def _kept(cache: dict[K, V], key: K, make: Callable[[], V]) -> V:
    if (value := cache.get(key)) is None:
        if len(cache) >= _KEPT:
            cache.clear()
        value = cache[key] = make()
    return value


def _plan(template: admin_service_pb2.Template, chosen: list[str]) -> _RenderPlan:
    return _kept(_plans, (template.template_id, template.version, tuple(chosen)), lambda: _new_plan(template, chosen))


def _new_plan(template: admin_service_pb2.Template, chosen: list[str]) -> _RenderPlan:
    contents = [c for c in template.contents if c.channel in chosen]
    needed = frozenset().union(*(templating.content_variables(c) for c in contents))
    if digest := templating.collects_digest(template):
        needed -= templating.DIGEST_VARIABLES
    parts = [[_sized(c.channel, part, source) for part, source in templating.content_parts(c)] for c in contents]
    sized = [(c.channel, [p for p in each if p is not None]) for c, each in zip(contents, parts, strict=True)]
    # A digest renders with more than a Send gives (its items): only rendering tells its size.
    if digest or any(None in each for each in parts):
        return _RenderPlan(contents, needed, None, -1)
    # The largest total length at which the contents fit with every variable that long: _fits only grows with it.
    low, high = -1, MAX_RENDERED_BYTES
    while low < high:
        middle = (low + high + 1) // 2
        if _fits(sized, lambda used: len(used) * middle):  # noqa: B023 - called at once
            low = middle
        else:
            high = middle - 1
    return _RenderPlan(contents, needed, sized, low)


def _fits(
    sized: list[tuple[str, list[tuple[int, tuple[str, ...], int]]]], length: Callable[[tuple[str, ...]], int]
) -> bool:
    """Whether every content fits when the variables a part uses take `length(used)` characters in all."""
    weight: dict[str, int] = {}
    for channel, parts in sized:
        size = PROTO_OVERHEAD
        for fixed, used, growth in parts:
            chars = fixed + growth * length(used)
            if chars > template_sandbox.MAX_OUTPUT_CHARS:
                return False
            size += 4 * chars + PROTO_OVERHEAD
        weight[channel] = max(weight.get(channel, 0), size)
    return sum(weight.values()) <= MAX_RENDERED_BYTES


def _sized(channel: str, part: str, source: str) -> tuple[int, tuple[str, ...], int] | None:
    """A part's substitutions and escaping growth; None when it must be rendered: one that does more than put
    variables into text, or a JSON body with a variable outside its strings (`{"n": {{ n }}}`), which only
    rendering shows to be JSON."""
    kind = templating.part_kind(channel, part, source)
    found = templating.substitutions(source)
    if found is None or (kind == templating.JSON and not templating.strings_only(source)):
        return None
    return (*found, templating.ESCAPE_GROWTH[kind])


def render_check(request: pb.SendRequest, template: admin_service_pb2.Template, chosen: list[str]) -> None:
    """Check now that every content a recipient could get (each chosen channel, each locale) renders, so a missing
    variable fails the Send rather than the delivery. A template that only puts variables into text is checked
    without rendering (see _RenderPlan); one that does more is rendered for every recipient."""
    plan = _plan(template, chosen)
    bad: dict[str, str] = {}
    # A topic's subscribers are users of the directory, each rendered with the Send's variables.
    recipients = [pb.Recipient(user_id=f"topic:{request.topic}")] if request.topic else request.recipients
    given_to_all = {name: request.variables[name] for name in request.variables}
    for i, recipient in enumerate(recipients):
        values = given_to_all  # read, never changed
        if recipient.variables:
            values = given_to_all | {name: recipient.variables[name] for name in recipient.variables}
        field = "variables" if not recipient.variables else f"recipients[{i}].variables"
        if not values.keys() >= plan.needed:
            missing = sorted(plan.needed - values.keys())
            bad.setdefault(field, f"template '{template.template_id}' needs {', '.join(repr(m) for m in missing)}")
        if not recipient.user_id:
            _check_addresses(i, recipient, chosen, channels.fallback_chain(template.fallback_channels, chosen), bad)
        if field in bad or plan.surely_fits(values):
            continue
        # The most each channel's rendering weighs, over its locales: a delivery carries its chain's renderings.
        weight: dict[str, int] = {}
        given = templating.send_values(template, values)
        for content in plan.contents:
            try:
                rendered = templating.render_content(content, given)
            except templating.TemplateError as e:
                where = f"{content.channel}{f' ({content.locale})' if content.locale else ''}"
                bad.setdefault(field, f"template '{template.template_id}' {where} {e}")
                continue
            weight[content.channel] = max(weight.get(content.channel, 0), rendered.ByteSize())
        if (total := sum(weight.values())) > MAX_RENDERED_BYTES:
            bad.setdefault(
                field,
                f"template '{template.template_id}' renders to {total:,} bytes for this recipient; "
                f"at most {MAX_RENDERED_BYTES:,} (the message bus carries a delivery in one message)",
            )
    if bad:
        raise InvalidArgument(bad)


def _check_addresses(i: int, recipient: pb.Recipient, chosen: list[str], chain: list[str], bad: dict[str, str]) -> None:
    """A recipient without a user_id needs an address for every channel, or for one channel of the chain."""
    for channel in chosen:
        if channel not in chain and channel not in recipient.addresses:
            bad[f"recipients[{i}].addresses[{channel}]"] = "no address and no user_id to look one up"
    if chain and not any(c in recipient.addresses for c in chain):
        bad[f"recipients[{i}].addresses"] = f"no address for any of {', '.join(chain)} and no user_id to look one up"
