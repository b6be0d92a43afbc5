"""Calls carriers' APIs through their wires over one pooled HTTP client. WeChat's access token is fetched from
`/cgi-bin/token` with the mini-program's appid and secret, cached until shortly before it expires, and refreshed
once when WeChat says it expired."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import httpx

from services.dispatch.carriers import WIRES
from services.dispatch.carriers.base import CarrierError, Credentials, Message, Op
from services.dispatch.carriers.wechat import TOKEN_EXPIRED
from shared.clock import Clock

# False while work runs that may be undone and taken again (the callback worker's rounds without savepoints): a call
# to a carrier cannot be undone with it (an order placed twice, a rider sent for twice), so it is refused before it
# is made, and the work is taken again where each call's effect is kept (services/dispatch/callback_queue.py).
calls_allowed: ContextVar[bool] = ContextVar("carrier_calls_allowed", default=True)


class CallsDeferred(Exception):
    """A carrier call asked for where calls are not allowed (`calls_allowed`); nothing was sent."""


class CarrierClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_urls: Mapping[str, str],
        clock: Clock,
        *,
        wechat_appid: str = "",
        wechat_secret: str = "",
    ) -> None:
        self.http = http
        self.base_urls = base_urls
        self.clock = clock
        self.wechat_appid = wechat_appid
        self.wechat_secret = wechat_secret
        self._tokens: dict[str, tuple[str, float]] = {}
        self._token_lock = asyncio.Lock()

    async def call(self, carrier: str, creds: Credentials, op: Op, canon: Mapping[str, Any]) -> dict[str, Any]:
        """The carrier's answer in canonical keys; raises `CarrierError` for a refusal, `httpx.HTTPError` when the
        carrier cannot be reached."""
        if not calls_allowed.get():
            raise CallsDeferred(f"{carrier} {op.value}: not called in work that may be taken again")
        wire = WIRES[carrier]
        for attempt in (1, 2):
            token = await self._access_token(carrier) if wire.uses_access_token else ""
            message = wire.encode_request(creds, op, canon, self.clock.now(), token)
            response = await self.http.post(
                self.base_urls[carrier] + message.path,
                params=dict(message.params),
                content=message.body,
                headers={**message.headers, "Content-Type": message.content_type},
            )
            try:
                return wire.decode_response(Message(body=response.content, status=response.status_code))
            except CarrierError as error:
                if error.code in TOKEN_EXPIRED and attempt == 1:
                    self._tokens.pop(carrier, None)
                    continue
                raise
            except ValueError as error:  # not JSON: a gateway page, an outage
                raise CarrierError(carrier, str(response.status_code), "unreadable answer") from error
        raise AssertionError("unreachable")

    async def _access_token(self, carrier: str) -> str:
        async with self._token_lock:
            token, expires = self._tokens.get(carrier, ("", 0.0))
            if token and time.monotonic() < expires:
                return token
            response = await self.http.get(
                self.base_urls[carrier] + "/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": self.wechat_appid, "secret": self.wechat_secret},
            )
            answer = response.json()
            if "access_token" not in answer:
                raise CarrierError(carrier, str(answer.get("errcode")), str(answer.get("errmsg")))
            expires_in = float(answer.get("expires_in", 7200))
            self._tokens[carrier] = (answer["access_token"], time.monotonic() + expires_in - 300)
            return str(answer["access_token"])
