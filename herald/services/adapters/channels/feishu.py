"""The feishu channel: Feishu / Lark custom bots (自定义机器人).

The address is the bot's webhook URL (.../open-apis/bot/v2/hook/<token>) and must be on the account's
endpoint: Feishu's by default, https://open.larksuite.com for Lark. A bot secured by signature verification
needs its secret as the account's `sign_secret`; Feishu makes one secret per bot, so a signing account serves
the bots sharing that secret, while bots secured by keyword or IP allow-list can share one account.
Wire format and codes: https://open.feishu.cn/document/ukTMukTMukTM/ucTM5YjL3ETO24yNxkjN
"""

import base64
import hashlib
import hmac
import time
from typing import Any

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels import http, robots
from herald.services.adapters.channels.base import Failure, Provider, Sent

DEFAULT_ENDPOINT = "https://open.feishu.cn"
# Feishu's generic "Bad Request"; its API gateway also uses it, with "too many request", when throttling.
_BAD_REQUEST = 9499
_MEANINGS: robots.Meanings = {
    _BAD_REQUEST: (Failure.PERMANENT, "Feishu could not read the message; it may not exceed 20 KB"),
    11232: (Failure.RATE_LIMITED, "a bot may send 100 messages a minute and 5 a second"),
    19001: (
        Failure.DEAD_ADDRESS,
        "the bot no longer exists (removed, or a mistyped URL): ask for its new webhook URL",
    ),
    19021: (
        Failure.BAD_CREDENTIALS,
        "the bot refused the signature: the account's sign_secret must be the bot's secret, "
        "and this host's clock right",
    ),
    19022: (Failure.PERMANENT, "the bot's IP allow-list must include herald's outgoing address"),
    19024: (Failure.PERMANENT, "the message must contain one of the bot's keywords"),
}


def sign(secret: str, timestamp: int) -> str:
    """Feishu keys the HMAC with "<timestamp>\\n<secret>" and signs nothing."""
    digest = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class FeishuBot(Provider):
    channel = "feishu"

    async def send(self, job: work_pb2.DeliveryJob) -> Sent:
        url = robots.webhook_url(self.account, DEFAULT_ENDPOINT, job.address, "/open-apis/bot/v2/hook/")
        payload = _message(job)
        secret = self.account.secrets.get("sign_secret", "")
        if secret:
            now = int(time.time())
            payload |= {"timestamp": str(now), "sign": sign(secret, now)}
        response = await http.call(self, "POST", url, json_body=payload)
        answer = robots.read(self.account, "Feishu", response, code="code", message="msg")
        if answer.code == 0:
            # A custom bot's answer carries no message id.
            return Sent()
        if answer.code == _BAD_REQUEST and "too many request" in answer.message.lower():
            raise answer.error(Failure.RATE_LIMITED, "Feishu is throttling this bot")
        raise answer.refusal(_MEANINGS)


def _message(job: work_pb2.DeliveryJob) -> dict[str, Any]:
    if not job.subject:
        return {"msg_type": "text", "content": {"text": job.body}}
    paragraphs = [[{"tag": "text", "text": line}] for line in job.body.split("\n")]
    return {"msg_type": "post", "content": {"post": {"zh_cn": {"title": job.subject, "content": paragraphs}}}}
