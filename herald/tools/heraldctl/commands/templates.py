"""`heraldctl templates`: apply a YAML file of templates (creating, or adding a version only where something
changed), list, get as YAML ready to apply, archive, preview."""

from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
import yaml
from google.protobuf import json_format
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import admin_service_pb2_grpc
from rich.table import Table

from herald.libs import categories
from herald.tools.heraldctl.arguments import Json, parse_category, parse_pairs
from herald.tools.heraldctl.connection import TIMEOUT, USAGE, Target, call, fail, report
from herald.tools.heraldctl.output import listing, out, print_json, show, when
from herald.tools.heraldctl.paging import pages

cli = typer.Typer(name="templates", help="Templates (admin token).", no_args_is_help=True)
TemplateId = Annotated[str, typer.Argument(help="the template's id, e.g. login-code")]


@cli.command("apply")
def templates_apply(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="YAML: one template, a list, or several documents")
    ],
) -> None:
    """Create or update the templates in a YAML file (one mapping, a list, or several documents)."""
    target: Target = ctx.obj
    documents = [d for d in yaml.safe_load_all(file.read_text()) if d]
    specs = [s for d in documents for s in (d if isinstance(d, list) else [d])]
    with target.admin_stub() as stub:
        for spec in specs:
            template = _template_from(spec)
            current = _get_or_none(target, stub, template.template_id)
            if current is None:
                created = call(stub.CreateTemplate, admin.CreateTemplateRequest(template=template), target.admin())
                out.print(f"{created.template_id}: created version {created.version}", soft_wrap=True)
            elif _same(current, template):
                out.print(f"{template.template_id}: unchanged (version {current.version})", soft_wrap=True)
            else:
                updated = call(stub.UpdateTemplate, admin.UpdateTemplateRequest(template=template), target.admin())
                out.print(f"{updated.template_id}: updated to version {updated.version}", soft_wrap=True)


@cli.command("list")
def templates_list(
    ctx: typer.Context,
    archived: Annotated[bool, typer.Option(help="include archived templates")] = False,
    as_json: Json = False,
) -> None:
    """Every template's latest version: category, channels, variables."""
    target: Target = ctx.obj
    with target.admin_stub() as stub:
        templates = [
            template
            for page in pages(
                lambda token: call(
                    stub.ListTemplates,
                    admin.ListTemplatesRequest(page_size=200, page_token=token, show_archived=archived),
                    target.admin(),
                )
            )
            for template in page.templates
        ]
    if as_json:
        print_json(listing("templates", templates))
        return
    table = Table("template id", "version", "category", "channels", "variables", "archived")
    for t in templates:
        table.add_row(
            t.template_id,
            str(t.version),
            categories.name(t.category),
            ", ".join(dict.fromkeys(c.channel for c in t.contents)),
            ", ".join(t.variables),
            when(t.archive_time) if t.HasField("archive_time") else "",
        )
    show(table)


@cli.command("get")
def templates_get(
    ctx: typer.Context,
    template_id: TemplateId,
    version: Annotated[int, typer.Option(help="0 = latest")] = 0,
    as_json: Json = False,
) -> None:
    """Print a template as YAML, ready for `templates apply` (or as JSON with --json)."""
    target: Target = ctx.obj
    with target.admin_stub() as stub:
        template = call(
            stub.GetTemplate, admin.GetTemplateRequest(template_id=template_id, version=version), target.admin()
        )
    if as_json:
        print_json(template)
        return
    spec = json_format.MessageToDict(template, preserving_proto_field_name=True)
    spec["category"] = categories.name(template.category)
    out.print(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), end="", soft_wrap=True)


@cli.command("archive")
def templates_archive(ctx: typer.Context, template_id: TemplateId) -> None:
    """Retire a template: new sends of it are refused; its versions are kept."""
    target: Target = ctx.obj
    with target.admin_stub() as stub:
        call(stub.ArchiveTemplate, admin.ArchiveTemplateRequest(template_id=template_id), target.admin())
    out.print(f"{template_id}: archived", soft_wrap=True)


@cli.command("preview")
def templates_preview(
    ctx: typer.Context,
    template_id: TemplateId,
    var: Annotated[list[str], typer.Option("--var", help="KEY=VALUE (repeat)")] = [],  # noqa: B006
    locale: Annotated[str, typer.Option(help="e.g. zh-CN; empty = the template's default")] = "",
    as_json: Json = False,
) -> None:
    """Render a template with the given variables, per channel, without sending anything."""
    target: Target = ctx.obj
    request = admin.PreviewTemplateRequest(template_id=template_id, variables=parse_pairs(var, "--var"), locale=locale)
    with target.admin_stub() as stub:
        reply = call(stub.PreviewTemplate, request, target.admin())
    if as_json:
        print_json(reply)
        return
    for content in reply.contents:
        out.rule(f"{content.channel} ({content.locale or 'default locale'})")
        for part in ("subject", "body", "html_body"):
            if text := getattr(content, part):
                out.print(f"[bold]{part}[/bold]: {text}")
        for key, value in content.data.items():
            out.print(f"[bold]data[{key}][/bold]: {value}")


def _template_from(spec: dict[str, Any]) -> admin.Template:
    spec = dict(spec)
    category = parse_category(str(spec.pop("category", "")))
    try:
        template = json_format.ParseDict(spec, admin.Template())
    except json_format.ParseError as e:
        fail(f"template {spec.get('template_id', '?')}: {e}", USAGE)
    template.category = category
    return template


def _get_or_none(
    target: Target, stub: admin_service_pb2_grpc.AdminServiceStub, template_id: str
) -> admin.Template | None:
    """The template as herald holds it now, or None when it has none of that id yet."""
    request = admin.GetTemplateRequest(template_id=template_id)
    try:
        template: admin.Template = stub.GetTemplate(request, metadata=target.admin(), timeout=TIMEOUT)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return None
        report(e)
    return template


def _same(current: admin.Template, wanted: admin.Template) -> bool:
    """Whether applying `wanted` would change nothing: every field a template's author writes is the same."""
    written = admin.Template()
    written.CopyFrom(current)
    for output_only in ("version", "create_time", "variables", "archive_time"):
        written.ClearField(output_only)
    return written == wanted
