"""WeCom application messages (发送应用消息) to one member, addressed by userid.

Every call needs an access_token, got from the corp id and the application's secret and valid for
`expires_in` seconds (7200). One instance serves one account, so it keeps that account's token, fetches it
once for all concurrent sends, refreshes it before it expires, and at once when WeCom says it expired or is
invalid (it can be revoked early), retrying that send once.
Wire format and codes: https://developer.work.weixin.qq.com/document/path/91039 (gettoken),
https://developer.work.weixin.qq.com/document/path/90236 (message/send),
https://developer.work.weixin.qq.com/document/path/90313 (error codes)
"""

from typing import Any
from urllib.parse import urlencode

import aiohttp

from herald.internal.v1 import work_pb2
from herald.services.adapters.channels import http, robots
from herald.services.adapters.channels.base import Account, DeliveryError, Failure, Provider, Sent
from herald.services.adapters.channels.provider_tokens import AccessToken
from herald.services.adapters.channels.wecom import is_robot_address

DEFAULT_ENDPOINT = "https://qyapi.weixin.qq.com"
# 40014 invalid access_token, 42001 access_token expired.
_TOKEN_REFUSED = frozenset({40014, 42001})
_CHECK_CORP_CREDENTIAL = "the account's corp_secret must be the application's Secret"
_NO_MEMBER = "no such member, or the member is outside the application's visible range"
_MEANINGS: robots.Meanings = {
    -1: (Failure.RETRYABLE, "WeCom is busy"),
    40001: (Failure.BAD_CREDENTIALS, _CHECK_CORP_CREDENTIAL),
    40091: (Failure.BAD_CREDENTIALS, _CHECK_CORP_CREDENTIAL),
    40013: (Failure.BAD_CREDENTIALS, "the account's corp_id setting is not a valid CorpID"),
    40056: (Failure.BAD_CREDENTIALS, "the account's agent_id setting is not this application's AgentId"),
    48002: (Failure.BAD_CREDENTIALS, "the application may not call this API"),
    60020: (Failure.BAD_CREDENTIALS, "the application's trusted IPs must include herald's outgoing address"),
    45009: (Failure.RATE_LIMITED, "WeCom's call frequency limit for the application"),
    45033: (Failure.RATE_LIMITED, "WeCom's limit of concurrent calls"),
    81013: (Failure.DEAD_ADDRESS, _NO_MEMBER),
    40003: (Failure.DEAD_ADDRESS, _NO_MEMBER),
    44004: (Failure.PERMANENT, "the message is empty"),
    45002: (Failure.PERMANENT, "the message is too long"),
}


class WecomApp(Provider):
    channel = "wecom"

    def __init__(self, account: Account, session: aiohttp.ClientSession) -> None:
        super().__init__(account, session)
        self._access_token = AccessToken(self._fetch_token)

    @classmethod
    def accepts(cls, address: str) -> bool:
        return not is_robot_address(address)

    async def send(self, job: work_pb2.DeliveryJob) -> Sent:
        payload = {"touser": job.address, "agentid": self._agent_id(), **_message(job)}
        token, _ = await self._access_token.get()
        answer = await self._post(token, payload)
        if answer.code in _TOKEN_REFUSED:
            token, _ = await self._access_token.get(refused=token)
            answer = await self._post(token, payload)
            if answer.code in _TOKEN_REFUSED:
                self._access_token.forget()
                raise answer.error(Failure.RETRYABLE, "WeCom refused a freshly issued access_token")
        if answer.code != 0:
            raise answer.refusal(_MEANINGS)
        # Only one member is addressed, so a partial success is a failure.
        if answer.body.get("invaliduser"):
            raise answer.error(Failure.DEAD_ADDRESS, _NO_MEMBER)
        if answer.body.get("unlicenseduser"):
            raise answer.error(Failure.PERMANENT, "the member has no WeCom API licence (基础接口许可)")
        return Sent(provider_message_id=str(answer.body.get("msgid", "")))

    def _agent_id(self) -> int:
        agent_id = self.account.setting("agent_id")
        if not agent_id.isdigit():
            raise DeliveryError(
                f"account {self.account.name}: 'agent_id' must be the application's AgentId, a number",
                Failure.BAD_CREDENTIALS,
            )
        return int(agent_id)

    async def _post(self, token: str, payload: dict[str, Any]) -> robots.Answer:
        url = f"{self.account.url(DEFAULT_ENDPOINT)}/cgi-bin/message/send?{urlencode({'access_token': token})}"
        return robots.read(self.account, "WeCom", await http.call(self, "POST", url, json_body=payload))

    async def _fetch_token(self) -> tuple[str, float]:
        query = urlencode({"corpid": self.account.setting("corp_id"), "corpsecret": self.account.secret("corp_secret")})
        response = await http.call(self, "GET", f"{self.account.url(DEFAULT_ENDPOINT)}/cgi-bin/gettoken?{query}")
        answer = robots.read(self.account, "WeCom", response)
        if answer.code != 0:
            raise answer.refusal(_MEANINGS)
        token, expires_in = answer.body.get("access_token"), answer.body.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int):
            raise answer.error(Failure.RETRYABLE, "WeCom issued no access_token")
        return token, float(expires_in)


def _message(job: work_pb2.DeliveryJob) -> dict[str, Any]:
    if not job.subject:
        return {"msgtype": "text", "text": {"content": job.body}}
    # textcard would need a link to open; markdown shows the title without one.
    return {"msgtype": "markdown", "markdown": {"content": f"### {job.subject}\n{job.body}"}}
