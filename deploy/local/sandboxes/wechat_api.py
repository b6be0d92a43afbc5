"""A local sandbox of WeChat's server API for the mini-program: access tokens and `subscribeMessage.send`.

`POST /cgi-bin/stable_token` issues tokens that expire (`WECHAT_API_SANDBOX_TOKEN_SECONDS`, or at once with `POST
/sandbox/tokens/expire`), the same one to every caller until it expires or a caller forces a refresh. A send with a
token that expired gets 42001; with one it never issued, or one `POST /sandbox/tokens/revoke` revoked (a stale
token an unforced `stable_token` still hands out), 40001. The sandbox keeps the customers' one-time grants, which
the mini-program adds after `wx.requestSubscribeMessage` (`POST /sandbox/grants`): a send spends one, and a send
with none left gets 43101. A field value WeChat's keyword-type rules refuse gets 47003 naming the field, checked
here by the rules as WeChat states them, not by the notify service's own fitting. Accepted messages are kept (`GET
/sandbox/messages`), in memory: a restart forgets them, and the grants and tokens.

The gateway's sandbox logins need no server, and the carrier simulator's WeChat token is its carriers' (under
`/<carrier>/`), so this is the stack's one sandbox of WeChat's own API. Run it with
`uvicorn --factory deploy.local.sandboxes.wechat_api:create_app`; the local stack starts it for the notify service
(`wire`).
"""

from __future__ import annotations

import re
import secrets
import time
from collections import Counter
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy.local.sandboxes.carriers.simulator import SimulatorSettings, credentials
from deploy.local.wiring import DEMO_WECHAT_APPID, Environments, Wiring
from shared.logging import configure_logging

NAME = "wechat-api-sandbox"

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff"
_SYMBOL = r"[!-/:-@\[-`{-~]"
# WeChat's keyword types and the values each accepts (subscribeMessage.send, "模板参数值的限制").
RULES = {
    "thing": re.compile(r".{1,20}"),
    "number": re.compile(r"(?=.{1,32}$)\d+(\.\d+)?"),
    "letter": re.compile(r"[A-Za-z]{1,32}"),
    "symbol": re.compile(f"{_SYMBOL}{{1,5}}"),
    "character_string": re.compile(rf"(?:[0-9A-Za-z]|{_SYMBOL}){{1,32}}"),
    "time": re.compile(r"(\d{4}年\d{1,2}月\d{1,2}日 )?([01]?\d|2[0-3]):[0-5]\d"),
    "date": re.compile(r"\d{4}年\d{1,2}月\d{1,2}日( ([01]?\d|2[0-3]):[0-5]\d)?"),
    "amount": re.compile(r"[¥$€£￥](?=(\d\.?){1,10}元?$)\d+(\.\d+)?元?"),
    "phone_number": re.compile(rf"(?:\d|{_SYMBOL}){{1,17}}"),
    "car_number": re.compile(f"[{_HAN}A-Za-z0-9][A-Za-z0-9]{{0,6}}[{_HAN}A-Za-z0-9]?"),
    "name": re.compile(f"(?=.*[{_HAN}])[{_HAN}A-Za-z·]{{1,10}}|(?:[A-Za-z ]|{_SYMBOL}){{1,20}}"),
    "phrase": re.compile(f"[{_HAN}]{{1,5}}"),
}
_KEY = re.compile(r"([a-z_]+?)\d+")
STATES = ("developer", "trial", "formal")
LANGS = ("zh_CN", "en_US", "zh_HK", "zh_TW")


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WECHAT_API_SANDBOX_", extra="ignore")

    appid: str = DEMO_WECHAT_APPID
    secret: str = ""
    token_seconds: int = 7200
    log_level: str = "INFO"


class Grant(BaseModel):
    openid: str
    template_id: str
    count: int = 1  # one `accept` adds one grant; grants accumulate


class Sandbox:
    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.tokens: dict[str, float] = {}  # token -> when it expires (monotonic)
        self.current = ""
        self.revoked: set[str] = set()  # refused by sends, still handed out until a forced refresh
        self.token_requests = 0
        self.grants: Counter[tuple[str, str]] = Counter()
        self.messages: list[dict[str, Any]] = []

    def issue(self, force: bool) -> tuple[str, int]:
        """The current token and its seconds left: the same one until it expires, unless forced."""
        self.token_requests += 1
        now = time.monotonic()
        if force or self.tokens.get(self.current, 0.0) <= now:
            self.tokens.pop(self.current, None)  # a forced refresh ends the old token
            self.current = secrets.token_urlsafe(32)
            self.tokens[self.current] = now + self.settings.token_seconds
            return self.current, self.settings.token_seconds
        return self.current, int(self.tokens[self.current] - now)

    def token_error(self, token: str) -> dict[str, Any] | None:
        if not token:
            return _error(41001, "access_token missing")
        if token not in self.tokens or token in self.revoked:
            return _error(40001, "invalid credential, access_token is invalid or not latest")
        if self.tokens[token] <= time.monotonic():
            return _error(42001, "access_token expired")
        return None


def _error(errcode: int, errmsg: str) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": f"{errmsg} rid: {secrets.token_hex(12)}"}


def field_error(data: Any) -> str | None:
    """What 47003 would say of a `data` object, or None when every value fits its keyword type."""
    if not isinstance(data, dict) or not data:
        return "data is empty"
    for key, entry in data.items():
        value = entry.get("value") if isinstance(entry, dict) else None
        match = _KEY.fullmatch(key)
        if not isinstance(value, str) or not value.strip():
            return f"data.{key}.value is emtpy"  # sic: WeChat's spelling
        if match is None or match[1] not in RULES or not RULES[match[1]].fullmatch(value):
            return f"data.{key}.value invalid"
    return None


def create_app(settings: SandboxSettings | None = None) -> FastAPI:
    if settings is None:
        settings = SandboxSettings()
        configure_logging(NAME, settings.log_level)
    sandbox = Sandbox(settings)
    app = FastAPI(title="WeChat mini-program server API sandbox", version="0.1.0")
    app.state.sandbox = sandbox

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": NAME}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready", "service": NAME}

    @app.post("/cgi-bin/stable_token", summary="An access token for the mini-program's appid and secret")
    async def stable_token(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            return _error(47001, "data format error")
        if not isinstance(body, dict) or body.get("grant_type") != "client_credential":
            return _error(40002, "invalid grant_type")
        if body.get("appid") != settings.appid:
            return _error(40013, "invalid appid")
        if body.get("secret") != settings.secret:
            return _error(40125, "invalid appsecret")
        token, expires_in = sandbox.issue(force=body.get("force_refresh") is True)
        return {"access_token": token, "expires_in": expires_in}

    @app.post("/cgi-bin/message/subscribe/send", summary="Send a subscribe message, spending one grant")
    async def send(request: Request, access_token: str = "") -> dict[str, Any]:
        refused = sandbox.token_error(access_token)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return _error(47001, "data format error")
        if not isinstance(body, dict):
            return _error(47001, "data format error")
        touser, template_id = body.get("touser"), body.get("template_id")
        if not isinstance(touser, str) or not touser:
            return _error(40003, "invalid openid")
        if not isinstance(template_id, str) or not template_id:
            return _error(40037, "invalid template_id")
        if body.get("miniprogram_state", "formal") not in STATES:
            return _error(47003, "argument invalid! miniprogram_state invalid")
        if body.get("lang", "zh_CN") not in LANGS:
            return _error(47003, "argument invalid! lang invalid")
        bad = field_error(body.get("data"))
        if bad is not None:
            return _error(47003, f"argument invalid! {bad}")
        if sandbox.grants[touser, template_id] <= 0:
            return _error(43101, "user refuse to accept the msg")
        sandbox.grants[touser, template_id] -= 1
        sandbox.messages.append(body)
        return {"errcode": 0, "errmsg": "ok"}

    # --- the mini-program's side, and inspection: sandbox only -------------------------------------------------

    @app.post("/sandbox/grants", summary="The customer accepted a template (wx.requestSubscribeMessage)")
    async def add_grant(grant: Grant) -> dict[str, int]:
        sandbox.grants[grant.openid, grant.template_id] += grant.count
        return {"grants": sandbox.grants[grant.openid, grant.template_id]}

    @app.post("/sandbox/tokens/expire", summary="Expire every issued token now")
    async def expire_tokens() -> dict[str, int]:
        sandbox.tokens = dict.fromkeys(sandbox.tokens, 0.0)
        return {"expired": len(sandbox.tokens)}

    @app.post("/sandbox/tokens/revoke", summary="Refuse the current token in sends, still handing it out unforced")
    async def revoke_token() -> dict[str, str]:
        sandbox.revoked.add(sandbox.current)
        return {"revoked": sandbox.current}

    @app.get("/sandbox/tokens", summary="How many tokens were asked for")
    async def tokens() -> dict[str, int]:
        return {"requests": sandbox.token_requests}

    @app.get("/sandbox/messages", summary="Every message accepted, oldest first")
    async def messages(touser: str = "") -> list[dict[str, Any]]:
        return [message for message in sandbox.messages if not touser or message["touser"] == touser]

    return app


def wire(wiring: Wiring) -> Environments:
    """The mini-program's appid and secret (the one the carrier simulator's console issues for it, so the stack's
    mini-program has one secret) for the sandbox and the notify service, which sends here."""
    secret = credentials(SimulatorSettings().master_key, "wechat", DEMO_WECHAT_APPID).app_secret
    return {
        NAME: {"WECHAT_API_SANDBOX_APPID": DEMO_WECHAT_APPID, "WECHAT_API_SANDBOX_SECRET": secret},
        "notify": {
            "NOTIFY_WECHAT_API_URL": wiring.urls[NAME],
            "NOTIFY_WECHAT_APPID": DEMO_WECHAT_APPID,
            "NOTIFY_WECHAT_SECRET": secret,
            "NOTIFY_WECHAT_MINIPROGRAM_STATE": "developer",
        },
    }
