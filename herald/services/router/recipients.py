"""What the router knows of the people a delivery goes to: directory entries, opt-outs, quiet hours.

The same questions decide a real delivery (routing) and answer a support
engineer's "why" (explain), so both ask them here.
"""

from dataclasses import dataclass
from datetime import datetime

from google.protobuf import json_format
from herald.v1 import common_pb2

from herald.internal.v1 import work_pb2
from herald.libs import quiet_hours
from herald.libs.store import Database
from herald.libs.timeutil import now
from herald.services.router import preferences, tables
from herald.services.router.batched_reads import BatchedReader
from herald.services.router.directory import load_users


@dataclass(frozen=True)
class Recipients:
    users: dict[str, tables.User]
    preferences: preferences.Preferences

    @classmethod
    async def load(cls, db: Database, user_ids: set[str]) -> "Recipients":
        async with db.session() as session:
            return cls(await load_users(session, user_ids), await preferences.load(session, user_ids))

    def opted_out(self, job: work_pb2.DeliveryJob) -> str:
        """Why the user's preferences rule this delivery out; "" when they do not."""
        return preferences.suppression(self.preferences, job.user_id, job.category, job.channel)

    def no_address(self, job: work_pb2.DeliveryJob) -> str:
        """Why this delivery has nowhere to go; "" when it has an address."""
        if job.address:
            return ""
        reason = f"no {job.channel} address: none in the request"
        if not job.user_id:
            return reason
        user = self.users.get(job.user_id)
        if user is not None and (mark := user.dead_mark(job.channel)):
            return f"{reason}, and the directory's was reported dead at {mark['time']}: {mark['reason']}"
        return f"{reason} and none in the directory for user '{job.user_id}'"

    def quiet_until(self, job: work_pb2.DeliveryJob) -> datetime | None:
        """When the recipient's quiet hours end, if this delivery is due inside them now.

        They apply to notification and marketing, for recipients whose time zone
        herald knows: the user's own window, else the sending app's, else the default.
        """
        user = self.users.get(job.user_id)
        if job.category == common_pb2.CATEGORY_CRITICAL or user is None or not user.timezone:
            return None
        if user.quiet_hours is not None:
            quiet = json_format.ParseDict(user.quiet_hours, common_pb2.QuietHours())
        elif job.HasField("quiet_hours"):
            quiet = job.quiet_hours
        else:
            quiet = quiet_hours.DEFAULT
        return quiet_hours.release_time(quiet, user.timezone, now())


class RecipientsReader:
    """Recipients for the router's consumers, read a fetched batch at a time (batched_reads.py): one query for the
    users and one for their preferences per batch, instead of two per message."""

    def __init__(self, db: Database) -> None:
        self._reader = BatchedReader[str, Recipients](lambda user_ids: Recipients.load(db, user_ids))

    async def load(self, user_ids: set[str]) -> Recipients:
        if not user_ids:
            return Recipients({}, {})
        return await self._reader.load(user_ids)
