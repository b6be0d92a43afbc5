"""WeChat's server API for the mini-program: its access token and `subscribeMessage.send`.

The access token comes from `POST /cgi-bin/stable_token`, not `/cgi-bin/token`: a `token` call invalidates the
token every other caller holds for the same appid (dispatch's WeChat delivery calls use the mini-program's appid
too), while a stable token is shared by every caller until it expires. It is kept in memory and fetched again a
margin before it expires. A send answered 40001/42001/40014 (a token WeChat no longer takes) fetches a fresh one,
forced if WeChat hands back the one it just refused, and is tried once more.

`send` answers what became of the message: `Sent` (WeChat accepted the call; the delivery result comes later, as
a push), `NoGrant` (43101: refused, or no grant left), `BadField` (47003, WeChat's errmsg names the field),
`WeChatError` (any other errcode) or `Unreachable` (no answer, or not one in WeChat's shape).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

URL = "https://api.weixin.qq.com"
NO_GRANT = 43101
BAD_FIELD = 47003
STALE_TOKEN = frozenset({40001, 40014, 42001})


@dataclass(frozen=True)
class SubscribeMessage:
    touser: str  # the customer's openid
    template_id: str
    data: Mapping[str, str]  # field key -> value, already fitted (`fields.fit`)
    page: str = ""  # a page of the mini-program, query allowed; empty: the card opens nothing
    miniprogram_state: str = "formal"  # developer | trial | formal
    lang: str = "zh_CN"

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "touser": self.touser,
            "template_id": self.template_id,
            "data": {key: {"value": value} for key, value in self.data.items()},
            "miniprogram_state": self.miniprogram_state,
            "lang": self.lang,
        }
        if self.page:
            body["page"] = self.page
        return body


@dataclass(frozen=True)
class Sent:
    pass


@dataclass(frozen=True)
class NoGrant:
    errmsg: str


@dataclass(frozen=True)
class BadField:
    errmsg: str  # e.g. "argument invalid! data.thing3.value is emtpy rid: ..."


@dataclass(frozen=True)
class WeChatError:
    errcode: int
    errmsg: str


@dataclass(frozen=True)
class Unreachable:
    reason: str


SendResult = Sent | NoGrant | BadField | WeChatError | Unreachable


class TokenUnavailable(Exception):
    """No access token: WeChat refused the appid and secret, or did not answer."""

    def __init__(self, result: WeChatError | Unreachable) -> None:
        super().__init__(str(result))
        self.result = result


@dataclass
class _Token:
    value: str
    fresh_until: float  # on the monotonic clock


@dataclass
class WeChatApi:
    http: httpx.AsyncClient
    appid: str
    secret: str
    url: str = URL
    # The token is fetched again this long before WeChat says it expires.
    refresh_margin_seconds: float = 300.0
    timeout: float = 5.0
    monotonic: Callable[[], float] = time.monotonic  # tests move it
    _token: _Token | None = field(default=None, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def access_token(self) -> str:
        """The cached token, fetched when there is none or it is about to expire."""
        async with self._lock:
            if self._token is None or self.monotonic() >= self._token.fresh_until:
                self._token = await self._fetch_token(force_refresh=False)
            return self._token.value

    async def send(self, message: SubscribeMessage) -> SendResult:
        try:
            token = await self.access_token()
            result, errcode = await self._send(token, message)
            if errcode in STALE_TOKEN:
                log.info("access token refused; fetching another", extra={"errcode": errcode})
                result, _ = await self._send(await self._replace(token), message)
        except TokenUnavailable as exc:
            return exc.result
        return result

    async def _replace(self, refused: str) -> str:
        """A token other than `refused`: the current stable token, or a forced new one if that is the same."""
        async with self._lock:
            if self._token is None or self._token.value == refused:
                token = await self._fetch_token(force_refresh=False)
                if token.value == refused:
                    token = await self._fetch_token(force_refresh=True)
                self._token = token
            return self._token.value

    async def _fetch_token(self, *, force_refresh: bool) -> _Token:
        body = {"grant_type": "client_credential", "appid": self.appid, "secret": self.secret}
        answer = await self._call("/cgi-bin/stable_token", {}, body | {"force_refresh": force_refresh})
        if isinstance(answer, Unreachable):
            raise TokenUnavailable(answer)
        try:
            value, expires_in = str(answer["access_token"]), float(answer["expires_in"])
        except (KeyError, TypeError, ValueError):
            errcode = answer.get("errcode")
            raise TokenUnavailable(
                WeChatError(int(errcode), str(answer.get("errmsg", "")))
                if isinstance(errcode, int)
                else Unreachable(f"stable_token answered without a token: {answer}")
            ) from None
        # Near its end a stable token comes back with little time left: use it for that time, then fetch again.
        lifetime = expires_in - self.refresh_margin_seconds if expires_in > self.refresh_margin_seconds else expires_in
        return _Token(value, self.monotonic() + lifetime)

    async def _send(self, token: str, message: SubscribeMessage) -> tuple[SendResult, int]:
        answer = await self._call("/cgi-bin/message/subscribe/send", {"access_token": token}, message.body())
        if isinstance(answer, Unreachable):
            return answer, 0
        try:
            errcode, errmsg = int(answer.get("errcode", 0)), str(answer.get("errmsg", ""))
        except (TypeError, ValueError):
            return Unreachable(f"subscribeMessage.send answered {answer}"), 0
        if errcode == 0:
            return Sent(), 0
        log.info("subscribeMessage.send refused", extra={"errcode": errcode, "template_id": message.template_id})
        if errcode == NO_GRANT:
            return NoGrant(errmsg), errcode
        if errcode == BAD_FIELD:
            return BadField(errmsg), errcode
        return WeChatError(errcode, errmsg), errcode

    async def _call(self, path: str, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any] | Unreachable:
        try:
            response = await self.http.post(
                f"{self.url.rstrip('/')}{path}", params=params, json=body, timeout=self.timeout
            )
            answer = response.json()  # WeChat answers JSON, sometimes labelled text/plain
        except (httpx.HTTPError, ValueError) as exc:
            return Unreachable(f"{path}: {type(exc).__name__}")
        if not isinstance(answer, dict):
            return Unreachable(f"{path} answered {answer!r}")
        return answer
