"""The carrier simulator: every carrier we cannot reach, served locally in its own wire format.

It plays each carrier's open platform under `/<carrier>/...` (the same paths, envelopes, signatures and error
bodies as the real API; WeChat's `/cgi-bin/token` too), keeps orders in memory (a restart forgets them), and drives
an accepted order forward by calling Songda's callback endpoint with that carrier's signature, retrying until it
gets the carrier's expected acknowledgement (at-least-once, like the real ones).

Accounts come from its console, `POST /_sim/accounts` (secrets derive from a master key, so they survive a
restart). The scenario is chosen per order by `sim:<name>` in the order's remark, else by the default
(`CARRIER_SIM_SCENARIO`; `chaos` mixes them at random): normal, slow_accept, duplicate, out_of_order, reassign,
pickup_failed, unreachable_return, carrier_cancel, force_majeure, create_fail, race (everyone accepts at once).
`GET /_sim/orders/<carrier>/<shop_order_id>` shows what it did. A WeChat legacy account created with
`"safe_mode": true` gets its pushes encrypted (安全模式) with its `encoding_aes_key` and the appid of the mini-program
whose access token placed the order. Run it with
`uvicorn --factory deploy.local.sandboxes.carriers.simulator:create_app`; the local stack starts it for dispatch
(`wire`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import random
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy.local.sandboxes.carriers.scenarios import SCRIPTS, Step, choose, steps
from deploy.local.wiring import DEMO_WECHAT_APPID, GATEWAY, Environments, Wiring
from services.dispatch.carriers import WIRES
from services.dispatch.carriers.base import Credentials, Message, Op, SignatureInvalid, Wire
from shared.geo import distance_m
from shared.logging import configure_logging

NAME = "carrier-simulator"
log = logging.getLogger(__name__)

ERRORS = {  # per carrier: (duplicate order, carrier system error, bad signature, not found, not allowed now)
    "dada": ("2105", "2000", "2005", "2007", "2076"),
    "shansong": ("40012", "500", "40004", "40010", "40013"),
    "sf": ("1016", "1001", "1004", "1011", "1013"),
    "meituan": ("5", "1", "2", "6", "7"),
    "uu": ("-1101", "-1001", "-1002", "-1103", "-1104"),
    "uu_v3": ("-1101", "-1001", "-104", "-1103", "-1104"),  # v2_0's codes; v3's are unverified
    "wechat_legacy": ("930562", "930557", "930561", "930563", "930565"),
    "wechat_intracity": ("934016", "934002", "40001", "934011", "934012"),
}
# The carrier's code for a placement without the amounts its quote returned (UU: -2006 order_price错误).
MISSING_QUOTE = {"uu": "-2006"}
RIDERS = {1: ("张师傅", "13800000001"), 2: ("李师傅", "13800000002")}


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARRIER_SIM_", extra="ignore")

    master_key: str = "songda-carrier-simulator"
    callback_url: str = ""  # Songda's base URL: callbacks go to <url>/v1/carriers/<carrier>/callback
    scenario: str = "normal"
    step_seconds: float = 0.5
    slow_accept_seconds: float = 600.0
    seed: int | None = None
    retry_seconds: list[float] = [0.2, 0.5, 1, 2, 5, 10, 30]
    max_concurrent_callbacks: int = 32
    log_level: str = "INFO"


def credentials(master_key: str, carrier: str, app_key: str) -> Credentials:
    """The account the simulator's console issues for an app key: every secret derives from the master key."""

    def digest(purpose: str) -> bytes:
        return hmac.new(master_key.encode(), f"{carrier}:{app_key}:{purpose}".encode(), hashlib.sha256).digest()

    return Credentials(app_key=app_key, app_secret=digest("secret").hex()[:32], shop_id=f"shop-{app_key}",
                       merchant_no=f"mch-{app_key}", token=digest("token").hex()[:32],
                       aes_key=base64.b64encode(digest("aes")).decode().rstrip("="))  # fmt: skip


@dataclass
class SimOrder:
    carrier: str
    creds: Credentials
    shop_order_id: str
    waybill_id: str
    scenario: str
    fields: dict[str, Any]
    fee_fen: int
    distance: int
    code: str
    tip_fen: int = 0
    accepted_at: datetime | None = None
    arrived_at: datetime | None = None
    picked_up: bool = False
    rider: int = 0
    action_time: int = 0
    cancelled: bool = False
    sent: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class AccountRequest(BaseModel):
    carrier: str
    app_key: str | None = None
    safe_mode: bool = False  # WeChat legacy: push encrypted


class Simulator:
    def __init__(self, settings: SimulatorSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http
        self.orders: dict[tuple[str, str], SimOrder] = {}
        self.tokens: dict[str, str] = {}  # WeChat access token → the mini-program's appid
        self.safe_mode: set[str] = set()  # WeChat legacy app keys whose pushes are encrypted
        self.rng = random.Random(settings.seed)  # noqa: S311  (scenario choice, not security)
        self.sending = asyncio.Semaphore(settings.max_concurrent_callbacks)

    def creds(self, carrier: str, app_key: str, appid: str = "") -> Credentials:
        """The account's secrets; the AES key only for a WeChat legacy account in safe mode (it pushes encrypted)."""
        creds = credentials(self.settings.master_key, carrier, app_key)
        return replace(creds, aes_key=creds.aes_key if app_key in self.safe_mode else "", appid=appid)

    # --- the API --------------------------------------------------------------------------------------------

    async def handle(self, carrier: str, path: str, request: Request) -> Response:
        wire = WIRES[carrier]
        op = next((op for op, p in wire.paths.items() if p == path), None)
        if op is None:
            return Response(status_code=404)
        message = Message(
            path=path, params=dict(request.query_params), body=await request.body(), headers=dict(request.headers)
        )
        errors = ERRORS[carrier]
        if wire.uses_access_token and message.params.get("access_token") not in self.tokens:
            return _answer(wire.seal_error("40001", "invalid credential, access_token is invalid or not latest"))
        try:
            appid = self.tokens.get(message.params.get("access_token", ""), "")
            creds = self.creds(carrier, wire.request_key(message), appid)
            fields = wire.decode_request(message, creds, datetime.now(UTC), op)
        except SignatureInvalid as error:
            return _answer(wire.seal_error(errors[2], f"signature: {error}"))
        except (ValueError, KeyError, TypeError, AttributeError) as error:  # not the carrier's format
            return _answer(wire.seal_error(errors[2], f"bad request: {error!r}"))
        result = await self.operate(wire, op, creds, fields)
        if isinstance(result, tuple):
            return _answer(wire.seal_error(*result))
        return _answer(wire.encode_result(result))

    async def operate(
        self, wire: Wire, op: Op, creds: Credentials, fields: dict[str, Any]
    ) -> dict[str, Any] | tuple[str, str]:
        errors = ERRORS[wire.name]
        shop_order_id = str(fields.get("shop_order_id") or "")
        order = self._find(wire.name, shop_order_id, str(fields.get("waybill_id") or ""))
        now = datetime.now(UTC)
        if op is Op.quote:
            return self._quote(fields)
        if op is Op.place:
            if order is not None:
                return errors[0], "订单已存在 (order exists)"
            missing = [name for name in wire.place_needs if fields.get(name) in (None, "")]
            if missing:
                return MISSING_QUOTE.get(wire.name, errors[2]), f"缺少报价金额 (missing {', '.join(missing)})"
            scenario = _scenario_of(fields) or choose(self.settings.scenario, self.rng)
            if scenario == "create_fail":
                return errors[1], "运力系统异常 (carrier system error)"
            quote = self._quote(fields)
            order = SimOrder(
                carrier=wire.name, creds=creds, shop_order_id=shop_order_id,
                waybill_id=f"{wire.brand or creds.brand or 'WX'}{secrets.token_hex(8).upper()}", scenario=scenario,
                fields=fields, fee_fen=quote["fee_fen"] + int(fields.get("tip_fen") or 0),
                distance=quote["distance_m"], code=wire.emits["created"], action_time=int(now.timestamp()),
            )  # fmt: skip
            self.orders[(wire.name, shop_order_id)] = order
            order.task = asyncio.create_task(self._drive(wire, order))
            result = {**self._view(order), "fee_fen": order.fee_fen, "distance_m": order.distance}
            if wire.name == "wechat_legacy":
                result |= {
                    "pickup_code": f"{self.rng.randrange(10**6):06d}",
                    "finish_code": f"{self.rng.randrange(10**4):04d}",
                }
            return result
        if order is None:
            return errors[3], "订单不存在 (order not found)"
        if op is Op.query:
            return self._view(order)
        if op is Op.locate:
            return self._view(order) | self._position(order, order.picked_up)
        status, _ = wire.statuses[order.code]
        fee = wire.cancel_fee_fen(accepted_at=order.accepted_at, arrived_at=order.arrived_at,
                                  picked_up=order.picked_up, now=now)  # fmt: skip
        if op is Op.preview_cancel:
            return {"deduct_fen": fee}
        if op is Op.cancel:
            if order.picked_up or order.cancelled or (status is not None and status.value in _ENDED):
                return errors[4], "当前状态不可取消 (cannot cancel now)"
            order.cancelled = True
            if order.task:
                order.task.cancel()
            return {"deduct_fen": fee}
        if op is Op.add_tip:
            tip = int(fields.get("tip_fen") or 0)
            if order.accepted_at is not None or order.cancelled:
                return errors[4], "已有骑手接单, 不可加小费 (a rider already took it)"
            if tip <= order.tip_fen:
                return errors[4], "小费需高于上次 (tip must exceed the previous one)"
            order.tip_fen = tip
            return {"tip_fen": tip}
        return errors[3], "unsupported"

    def _find(self, carrier: str, shop_order_id: str, waybill_id: str) -> SimOrder | None:
        if shop_order_id and (carrier, shop_order_id) in self.orders:
            return self.orders[(carrier, shop_order_id)]
        return next(
            (o for o in self.orders.values() if waybill_id and o.carrier == carrier and o.waybill_id == waybill_id),
            None,
        )

    def _quote(self, fields: dict[str, Any]) -> dict[str, Any]:
        metres = 3000
        if fields.get("sender_lat") and fields.get("receiver_lat"):
            metres = distance_m(
                fields["sender_lat"], fields["sender_lng"], fields["receiver_lat"], fields["receiver_lng"]
            )
        fee = 500 + 100 * (metres // 1000)
        return {"fee_fen": fee, "total_fen": fee, "distance_m": metres, "eta_seconds": 600 + metres // 5,
                "token": secrets.token_hex(8)}  # fmt: skip

    def _view(self, order: SimOrder) -> dict[str, Any]:
        view: dict[str, Any] = {"waybill_id": order.waybill_id, "status": order.code, "action_time": order.action_time,
                                "tip_fen": order.tip_fen}  # fmt: skip
        if order.rider:
            name, phone = RIDERS[order.rider]
            view |= {"rider_name": name, "rider_phone": phone}
        return view

    def _position(self, order: SimOrder, on_the_way: bool) -> dict[str, Any]:
        f = order.fields
        if not f.get("sender_lat") or not f.get("receiver_lat"):
            return {}
        share = 0.5 if on_the_way else 0.0
        return {
            "rider_lat": f["sender_lat"] + (f["receiver_lat"] - f["sender_lat"]) * share,
            "rider_lng": f["sender_lng"] + (f["receiver_lng"] - f["sender_lng"]) * share,
            "eta_seconds": 300 if order.picked_up else 900,
        }

    # --- driving an order -----------------------------------------------------------------------------------

    async def _drive(self, wire: Wire, order: SimOrder) -> None:
        script = steps(wire, order.scenario)
        step_seconds = self.settings.step_seconds
        if order.scenario == "slow_accept":
            await asyncio.sleep(self.settings.slow_accept_seconds)
        elif order.scenario != "race":
            await asyncio.sleep(step_seconds)
        base = order.action_time
        timeline = [(step, base + index) for index, step in enumerate(script, start=1)]
        sends = [self._callback_fields(order, step, action_time) for step, action_time in timeline]
        if order.scenario == "out_of_order":
            self.rng.shuffle(sends)
        try:
            # The order's own state moves in script order; what is sent about it may arrive shuffled.
            for (step, action_time), fields in zip(timeline, sends, strict=True):
                self._advance(wire, order, step, action_time)
                await self._send(wire, order, fields)
                if order.scenario == "duplicate":
                    await self._send(wire, order, fields)
                await asyncio.sleep(step_seconds)
            if order.scenario == "duplicate" and sends:
                await self._send(wire, order, sends[0])  # a stale repeat, long after
        except asyncio.CancelledError:
            return

    def _advance(self, wire: Wire, order: SimOrder, step: Step, action_time: int) -> None:
        order.code, order.action_time = step.code, action_time
        when = datetime.fromtimestamp(action_time, UTC)
        status, _ = wire.statuses[step.code]
        if step.name == "rider_assigned":
            order.rider, order.accepted_at, order.arrived_at = step.rider, when, None
        elif step.name == "withdrawn":
            order.rider, order.accepted_at = 0, None
        elif step.name == "rider_at_store":
            order.arrived_at = when
        elif status is not None and status.value in ("picked_up", "delivering"):
            order.picked_up = True

    def _callback_fields(self, order: SimOrder, step: Step, action_time: int) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "shop_order_id": order.shop_order_id, "waybill_id": order.waybill_id, "status": step.code,
            "action_time": action_time, "shop_id": order.creds.shop_id,
            "reason": step.name if step.name in ("pickup_failed", "force_majeure", "cancelled", "returning") else None,
        }  # fmt: skip
        if step.rider:
            name, phone = RIDERS[step.rider]
            fields |= {"rider_id": f"r{step.rider}", "rider_name": name, "rider_phone": phone}
            on_the_way = step.name in ("picked_up", "delivering", "returning")
            fields |= self._position(order, on_the_way)
        fields.pop("eta_seconds", None)
        return fields

    async def _send(self, wire: Wire, order: SimOrder, fields: dict[str, Any]) -> None:
        if not self.settings.callback_url:
            return
        message = wire.encode_callback(order.creds, fields, datetime.now(UTC))
        url = f"{self.settings.callback_url.rstrip('/')}/v1/carriers/{wire.name}/callback"
        delays = [0.0, *self.settings.retry_seconds]
        for delay in delays:
            await asyncio.sleep(delay)
            try:
                async with self.sending:
                    headers = {**message.headers, "Content-Type": message.content_type}
                    answer = await self.http.post(url, params=dict(message.params), content=message.body,
                                                  headers=headers)  # fmt: skip
            except httpx.HTTPError:
                continue
            if wire.is_ack(Message(body=answer.content, status=answer.status_code)):
                order.sent.append({"status": fields["status"], "action_time": fields["action_time"], "acked": True})
                return
        order.sent.append({"status": fields["status"], "action_time": fields["action_time"], "acked": False})


_ENDED = {"delivered", "returned", "cancelled", "failed", "pickup_failed"}
_SIM_TAG = re.compile(r"sim:([a-z_]+)")


def _scenario_of(fields: dict[str, Any]) -> str | None:
    match = _SIM_TAG.search(str(fields.get("remark") or ""))
    return match.group(1) if match and match.group(1) in SCRIPTS else None


def _answer(message: Message) -> Response:
    return Response(message.body, status_code=message.status, media_type=message.content_type)


def create_app(settings: SimulatorSettings | None = None) -> FastAPI:
    if settings is None:
        settings = SimulatorSettings()
        configure_logging(NAME, settings.log_level)
    state: dict[str, Simulator] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=10) as http:
            state["sim"] = Simulator(settings, http)
            app.state.simulator = state["sim"]
            yield
            for order in state["sim"].orders.values():
                if order.task:
                    order.task.cancel()

    app = FastAPI(title="Songda carrier simulator", lifespan=lifespan)

    @app.get("/healthz")
    @app.get("/readyz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/_sim/accounts", summary="The carriers' consoles: an account (app key, secret, shop, token)")
    async def new_account(body: AccountRequest) -> dict[str, str]:
        if body.carrier not in WIRES:
            return {"error": f"unknown carrier {body.carrier}"}
        app_key = body.app_key or f"{body.carrier}-{secrets.token_hex(4)}"
        if body.safe_mode:
            state["sim"].safe_mode.add(app_key)
        creds = credentials(state["sim"].settings.master_key, body.carrier, app_key)
        return {"carrier": body.carrier, "app_key": creds.app_key, "app_secret": creds.app_secret,
                "shop_id": creds.shop_id, "merchant_no": creds.merchant_no, "token": creds.token,
                "encoding_aes_key": creds.aes_key}  # fmt: skip

    @app.get("/_sim/orders/{carrier}/{shop_order_id}", summary="What the simulator did with an order")
    async def order_view(carrier: str, shop_order_id: str) -> dict[str, Any]:
        order = state["sim"].orders.get((carrier, shop_order_id))
        if order is None:
            return {}
        return {**state["sim"]._view(order), "scenario": order.scenario, "sent": order.sent,
                "cancelled": order.cancelled, "fee_fen": order.fee_fen}  # fmt: skip

    @app.get("/{carrier}/cgi-bin/token", summary="WeChat: an access token for a mini-program's appid and secret")
    async def access_token(carrier: str, appid: str = "", secret: str = "") -> dict[str, Any]:
        if carrier not in WIRES or not WIRES[carrier].uses_access_token:
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if not appid or secret != state["sim"].creds("wechat", appid).app_secret:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        token = secrets.token_urlsafe(24)
        state["sim"].tokens[token] = appid
        return {"access_token": token, "expires_in": 7200}

    @app.post("/{carrier}/{path:path}")
    async def carrier_api(carrier: str, path: str, request: Request) -> Response:
        if carrier not in WIRES:
            return Response(status_code=404)
        return await state["sim"].handle(carrier, "/" + path, request)

    return app


def wire(wiring: Wiring) -> Environments:
    """Callbacks to the gateway's public carrier endpoints at a pace a person can follow; dispatch sends every
    carrier here, and its WeChat mini-program account is the one the simulator's console issues."""
    master_key = SimulatorSettings().master_key
    return {
        NAME: {"CARRIER_SIM_CALLBACK_URL": wiring.urls[GATEWAY], "CARRIER_SIM_STEP_SECONDS": "1.5"},
        "dispatch": {
            "DISPATCH_CARRIER_SANDBOX_URL": wiring.urls[NAME],
            "DISPATCH_WECHAT_APPID": DEMO_WECHAT_APPID,
            "DISPATCH_WECHAT_SECRET": credentials(master_key, "wechat", DEMO_WECHAT_APPID).app_secret,
        },
    }
