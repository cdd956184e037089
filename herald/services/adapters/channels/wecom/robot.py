"""WeCom group robots (群机器人): the address is the robot's webhook URL, whose `key` is its only secret, so
there is no account credential to refuse. It must be on the account's endpoint (WeCom's by default).
Wire format and codes: https://developer.work.weixin.qq.com/document/path/91770 and
https://developer.work.weixin.qq.com/document/path/90313
"""

from typing import Any

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels import http, robots
from herald.services.adapters.channels.base import Failure, Provider, Sent
from herald.services.adapters.channels.wecom import is_robot_address

DEFAULT_ENDPOINT = "https://qyapi.weixin.qq.com"
# A robot may send 20 messages a minute.
_WINDOW = 60.0
_MEANINGS: robots.Meanings = {
    -1: (Failure.RETRYABLE, "WeCom is busy"),
    45009: (Failure.RATE_LIMITED, "a robot may send 20 messages a minute"),
    93000: (
        Failure.DEAD_ADDRESS,
        "the robot no longer exists (removed from its group, or a mistyped URL): ask for its new webhook URL",
    ),
    40058: (Failure.PERMANENT, "the message is too long (text: 2048 bytes, markdown: 4096)"),
    44004: (Failure.PERMANENT, "the message is empty"),
}


class WecomRobot(Provider):
    channel = "wecom"

    @classmethod
    def accepts(cls, address: str) -> bool:
        return is_robot_address(address)

    async def send(self, job: work_pb2.DeliveryJob) -> Sent:
        url = robots.webhook_url(self.account, DEFAULT_ENDPOINT, job.address, "/cgi-bin/webhook/send", key_param="key")
        response = await http.call(self, "POST", url, json_body=_message(job))
        answer = robots.read(self.account, "WeCom", response)
        if answer.code == 0:
            # A robot's answer carries no message id.
            return Sent()
        raise answer.refusal(_MEANINGS, retry_after=_WINDOW)


def _message(job: work_pb2.DeliveryJob) -> dict[str, Any]:
    if not job.subject:
        return {"msgtype": "text", "text": {"content": job.body}}
    return {"msgtype": "markdown", "markdown": {"content": f"### {job.subject}\n{job.body}"}}
