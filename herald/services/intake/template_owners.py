"""Who may send, read and change a template. The company's templates (owner "", made by an operator or an author)
go to every app, as before; an app's (made with its key) go only to the app and the apps it shares them with, so
one team's wording never goes out under another's name unless it agreed. Changes are the owner's, an operator's
or an author's. Sharing is the template's current setting, not part of a version (intake_template_shares)."""

from collections import defaultdict

from herald.v1 import admin_service_pb2 as pb
from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.libs.errors import PermissionDenied
from herald.services.intake import tables

MAX_SHARES = 100
S = tables.TemplateShare
T = tables.Template


def share_problems(template: pb.Template, bad: dict[str, str]) -> None:
    if len(template.shared_with_app_ids) > MAX_SHARES:
        bad["template.shared_with_app_ids"] = f"at most {MAX_SHARES} apps"
    for i, app_id in enumerate(template.shared_with_app_ids):
        if not 0 < len(app_id) <= 40:
            bad[f"template.shared_with_app_ids[{i}]"] = "an app id"


def shared_with(template: pb.Template, owner_app_id: str) -> list[str]:
    """The apps besides the owner that may send it; none for the company's templates, which every app may."""
    return sorted(set(template.shared_with_app_ids) - {owner_app_id}) if owner_app_id else []


async def replace_shares(session: AsyncSession, template_id: str, app_ids: list[str]) -> None:
    await session.execute(delete(S).where(S.template_id == template_id))
    session.add_all(S(template_id=template_id, app_id=app_id) for app_id in app_ids)


async def shares_of(session: AsyncSession, template_ids: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    if template_ids:
        rows = await session.execute(
            select(S.template_id, S.app_id).where(S.template_id.in_(template_ids)).order_by(S.app_id)
        )
        for template_id, app_id in rows:
            found[template_id].append(app_id)
    return found


def check_sender(template: pb.Template, app_id: str) -> None:
    """An app may send (and read) the company's templates, its own and those shared with it."""
    owner = template.owner_app_id
    if owner and owner != app_id and app_id not in template.shared_with_app_ids:
        raise PermissionDenied(
            f"template '{template.template_id}' belongs to app {owner}, which has not shared it with app {app_id}"
        )


def check_owner(row: tables.Template, app_id: str | None) -> None:
    """`app_id` None: an operator or author, who may change any template."""
    if app_id is not None and row.owner_app_id != app_id:
        whose = f"app {row.owner_app_id}'s" if row.owner_app_id else "the company's"
        raise PermissionDenied(
            f"template '{row.template_id}' is {whose}: its owner, an operator or an author may change it"
        )


def visible_to(app_id: str) -> ColumnElement[bool]:
    """The templates `app_id` may send, for ListTemplates."""
    shared = select(S.template_id).where(S.app_id == app_id)
    return or_(T.owner_app_id.in_(("", app_id)), T.template_id.in_(shared))
