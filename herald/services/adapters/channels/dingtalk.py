"""The dingtalk channel: DingTalk custom group robots (自定义机器人).

The address is the robot's webhook URL, which carries its access_token; it must be on the account's endpoint
(DingTalk's by default), so an account is also the list of hosts robots may be called on. A robot secured by
signing (加签) needs its secret as the account's `sign_secret`: DingTalk makes one secret per robot, so a
signing account serves the robots sharing that secret, while robots secured by keyword or IP allow-list need
no secret and can share one account.
Wire format and codes: https://open.dingtalk.com/document/orgapp/custom-robot-access
"""

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import urlencode

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels import http, robots
from herald.services.adapters.channels.base import DeliveryError, Failure, Provider, Sent

DEFAULT_ENDPOINT = "https://oapi.dingtalk.com"
# A robot that sent more than 20 messages in a minute is throttled for 10 minutes.
_THROTTLED_FOR = 600.0
# The security check (keyword, IP allow-list or signature) failed; errmsg says which.
_SECURITY = 310000
_GONE = "the robot no longer exists (removed, or a mistyped URL): ask for its new webhook URL"
_UNSAFE = "DingTalk refused the content as unsafe or inappropriate"
_MEANINGS: robots.Meanings = {
    -1: (Failure.RETRYABLE, "DingTalk is busy"),
    130101: (Failure.RATE_LIMITED, "a robot may send 20 messages a minute"),
    410100: (Failure.RATE_LIMITED, "a robot may send 20 messages a minute"),
    300001: (Failure.DEAD_ADDRESS, _GONE),
    300005: (Failure.DEAD_ADDRESS, _GONE),
    400101: (Failure.DEAD_ADDRESS, _GONE),
    400106: (Failure.DEAD_ADDRESS, _GONE),
    400013: (Failure.DEAD_ADDRESS, "the robot's group was disbanded"),
    400102: (Failure.PERMANENT, "the robot is disabled; a group admin can enable it again"),
    400105: (Failure.PERMANENT, "DingTalk does not support this message type"),
    430101: (Failure.PERMANENT, _UNSAFE),
    430102: (Failure.PERMANENT, _UNSAFE),
    430103: (Failure.PERMANENT, _UNSAFE),
    430104: (Failure.PERMANENT, _UNSAFE),
}


def sign(secret: str, timestamp_ms: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class DingTalkRobot(Provider):
    channel = "dingtalk"

    async def send(self, job: work_pb2.DeliveryJob) -> Sent:
        url = robots.webhook_url(self.account, DEFAULT_ENDPOINT, job.address, "/robot/send", key_param="access_token")
        secret = self.account.secrets.get("sign_secret", "")
        if secret:
            now = int(time.time() * 1000)
            url += "&" + urlencode({"timestamp": now, "sign": sign(secret, now)})
        response = await http.call(self, "POST", url, json_body=_message(job))
        answer = robots.read(self.account, "DingTalk", response)
        if answer.code == 0:
            # A robot's answer carries no message id.
            return Sent()
        if answer.code == _SECURITY:
            raise _security_refusal(answer)
        raise answer.refusal(_MEANINGS, retry_after=_THROTTLED_FOR)


def _message(job: work_pb2.DeliveryJob) -> dict[str, Any]:
    if not job.subject:
        return {"msgtype": "text", "text": {"content": job.body}}
    # The markdown title only shows in the chat list and notifications, so the text repeats it as a heading.
    return {"msgtype": "markdown", "markdown": {"title": job.subject, "text": f"#### {job.subject}\n\n{job.body}"}}


def _security_refusal(answer: robots.Answer) -> DeliveryError:
    said = answer.message.lower()
    if "keyword" in said or "关键词" in said:
        return answer.error(Failure.PERMANENT, "the message must contain one of the robot's keywords")
    if "whitelist" in said or "白名单" in said:
        return answer.error(Failure.PERMANENT, "the robot's IP allow-list must include herald's outgoing address")
    return answer.error(
        Failure.BAD_CREDENTIALS,
        "the robot refused the signature: the account's sign_secret must be the robot's secret (SEC...), "
        "and this host's clock right",
    )
