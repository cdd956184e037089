"""An SMS template both fake providers can send: Alibaba sends only approved templates, named in
data["template_code"], with the variables it fills."""

import uuid

from herald.v1 import admin_service_pb2, common_pb2

from tests.helpers.client import Herald

S = common_pb2
PHONE = "+8613800138000"


async def sms_template(herald: Herald) -> str:
    template_id = f"t-{uuid.uuid4().hex[:10]}"
    content = S.ChannelContent(channel="sms", body="Your code is {{ code }}", data={"template_code": "SMS_CODE"})
    content.data["code"] = "{{ code }}"
    await herald.admin_stub.CreateTemplate(
        admin_service_pb2.CreateTemplateRequest(
            template=admin_service_pb2.Template(
                template_id=template_id, category=S.CATEGORY_CRITICAL, contents=[content]
            )
        ),
        metadata=herald.admin,
    )
    return template_id
