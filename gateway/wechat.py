"""WeChat mini-program login: exchanging a `wx.login()` code for the user's openid (code2session).

`WeChatCode2Session` calls the real `GET /sns/jscode2session`; `SandboxCode2Session` answers locally with a stable
openid per code, so the platform runs without a WeChat app.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Protocol

import httpx

from shared.errors import BadRequest, ServiceError, TooManyRequests, Unauthorized, UpstreamUnavailable


@dataclass(frozen=True)
class WeChatSession:
    openid: str
    unionid: str | None = None


class Code2Session(Protocol):
    async def exchange(self, code: str) -> WeChatSession: ...


class SandboxCode2Session:
    def __init__(self, appid: str) -> None:
        self.appid = appid

    async def exchange(self, code: str) -> WeChatSession:
        digest = hashlib.sha256(f"{self.appid}:{code}".encode()).digest()
        return WeChatSession(openid="sbx_" + base64.urlsafe_b64encode(digest)[:24].decode())


class WeChatCode2Session:
    def __init__(self, client: httpx.AsyncClient, *, api_base: str, appid: str, secret: str) -> None:
        if not appid or not secret:
            raise ValueError("GATEWAY_WECHAT_APPID and GATEWAY_WECHAT_SECRET are required (GATEWAY_WECHAT_MODE=wechat)")
        self.client = client
        self.api_base = api_base.rstrip("/")
        self.appid = appid
        self.secret = secret

    async def exchange(self, code: str) -> WeChatSession:
        try:
            response = await self.client.get(
                f"{self.api_base}/sns/jscode2session",
                params={
                    "appid": self.appid,
                    "secret": self.secret,
                    "js_code": code,
                    "grant_type": "authorization_code",
                },
                timeout=5.0,
            )
            # WeChat answers JSON with a text/plain content type.
            body = json.loads(response.text)
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamUnavailable("WeChat login is unavailable") from exc
        errcode = int(body.get("errcode") or 0)
        if errcode == 0 and body.get("openid"):
            return WeChatSession(openid=body["openid"], unionid=body.get("unionid"))
        raise _login_error(errcode, str(body.get("errmsg", "")))


def _login_error(errcode: int, errmsg: str) -> ServiceError:
    if errcode in (40029, 40163):  # invalid or already used code
        return Unauthorized(f"WeChat refused the login code ({errcode}: {errmsg})")
    if errcode == 45011:
        return TooManyRequests(retry_after=60, detail="WeChat login rate limit reached")
    if errcode == -1:
        return UpstreamUnavailable("WeChat is busy; try again")
    if errcode == 40226:
        return Unauthorized("This WeChat user is blocked")
    return BadRequest(f"WeChat login failed ({errcode}: {errmsg})")
