"""Templates have an owner: one an app creates with its key is the app's, and another app may send it, or read
it, only once the owner shared it with that app; the company's (created by an operator or an author) go to every
app, as before."""

import uuid

import grpc
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import common_pb2 as common
from herald.v1 import message_service_pb2 as msg

from tests.helpers.client import Herald, all_final, bad_fields, rpc_error
from tests.helpers.webhook_sink import WebhookSink


def _template(template_id: str, shared_with: tuple[str, ...] = ()) -> admin.Template:
    return admin.Template(
        template_id=template_id,
        category=common.CATEGORY_NOTIFICATION,
        contents=[common.ChannelContent(channel="webhook", body='{"hello": "team"}')],
        shared_with_app_ids=shared_with,
    )


async def test_an_apps_template_goes_out_for_another_app_only_once_shared(herald: Herald, sink: WebhookSink) -> None:
    owner_id, owner = await herald.create_app()
    other_id, other = await herald.create_app()
    template_id = f"team-{uuid.uuid4().hex[:8]}"
    made = await herald.admin_stub.CreateTemplate(
        admin.CreateTemplateRequest(template=_template(template_id)), metadata=owner
    )
    assert made.owner_app_id == owner_id and list(made.shared_with_app_ids) == []
    path = f"/owned-{template_id}"
    send = msg.SendRequest(template_id=template_id, recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})])

    await herald.wait_message(owner, await herald.send(owner, send), all_final)
    refused = await rpc_error(herald.messages.Send(send, metadata=other))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert owner_id in (refused.details() or "") and "not shared" in (refused.details() or "")
    unseen = await rpc_error(
        herald.admin_stub.GetTemplate(admin.GetTemplateRequest(template_id=template_id), metadata=other)
    )
    assert unseen.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = await herald.admin_stub.ListTemplates(admin.ListTemplatesRequest(page_size=1000), metadata=other)
    assert template_id not in {t.template_id for t in listed.templates}
    taken = await rpc_error(
        herald.admin_stub.UpdateTemplate(admin.UpdateTemplateRequest(template=_template(template_id)), metadata=other)
    )
    assert taken.code() == grpc.StatusCode.PERMISSION_DENIED

    nobody = await rpc_error(
        herald.admin_stub.UpdateTemplate(
            admin.UpdateTemplateRequest(template=_template(template_id, ("app_nobody",))), metadata=owner
        )
    )
    assert nobody.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "template.shared_with_app_ids[0]" in bad_fields(nobody)

    shared = await herald.admin_stub.UpdateTemplate(
        admin.UpdateTemplateRequest(template=_template(template_id, (other_id,))), metadata=owner
    )
    assert list(shared.shared_with_app_ids) == [other_id] and shared.owner_app_id == owner_id
    delivered = await herald.wait_message(other, await herald.send(other, send), all_final)
    assert [d.state for d in delivered.deliveries] == [common.DELIVERY_STATE_SENT]
    listed = await herald.admin_stub.ListTemplates(admin.ListTemplatesRequest(page_size=1000), metadata=other)
    assert template_id in {t.template_id for t in listed.templates}
    still_not_theirs = await rpc_error(
        herald.admin_stub.ArchiveTemplate(admin.ArchiveTemplateRequest(template_id=template_id), metadata=other)
    )
    assert still_not_theirs.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_companys_templates_go_to_every_app_and_only_operators_change_them(herald: Herald) -> None:
    _, app = await herald.create_app()
    template_id = await herald.create_template({"webhook": "{}"})
    company = await herald.admin_stub.GetTemplate(admin.GetTemplateRequest(template_id=template_id), metadata=app)
    assert company.owner_app_id == ""
    refused = await rpc_error(
        herald.admin_stub.UpdateTemplate(admin.UpdateTemplateRequest(template=_template(template_id)), metadata=app)
    )
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED and "company" in (refused.details() or "")
