"""Opt-outs: who does not want which category on which channel.

Users receive every category until they opt out. A channel's own preference
wins over the every-channel one (""), so "no marketing, except by e-mail" is two
preferences. Critical messages (login codes, security alerts) go out whatever
the preferences say.
"""

from herald.v1 import common_pb2
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.libs import categories
from herald.services.router import tables

# user -> (category, channel) -> opted out
Preferences = dict[str, dict[tuple[int, str], bool]]


# Built once, as directory.USERS.
PREFERENCES = select(tables.Preference).where(tables.Preference.user_id.in_(bindparam("user_ids", expanding=True)))


async def load(session: AsyncSession, user_ids: set[str]) -> Preferences:
    if not user_ids:
        return {}
    found: Preferences = {}
    for row in await session.scalars(PREFERENCES, {"user_ids": list(user_ids)}):
        found.setdefault(row.user_id, {})[(row.category, row.channel)] = row.opted_out
    return found


def suppression(preferences: Preferences, user_id: str, category: int, channel: str) -> str:
    """Why this delivery must not go out because of the user's preferences; "" when it may."""
    if category == common_pb2.CATEGORY_CRITICAL or user_id not in preferences:
        return ""
    mine = preferences[user_id]
    for key, where in (((category, channel), f"on {channel}"), ((category, ""), "on every channel")):
        if key in mine:
            return f"user '{user_id}' opted out of {categories.name(category)} messages {where}" if mine[key] else ""
    return ""
