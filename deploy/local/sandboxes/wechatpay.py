"""A local WeChat Pay v3 sandbox: the payment provider we cannot reach, served in its own wire format.

It verifies the merchant's request signatures, keeps trades and refunds (in memory: a sandbox restart forgets
them), signs its answers with a platform key, and plays the customer: `POST /sandbox/pay` pays a prepay id, after
which the signed, encrypted `TRANSACTION.SUCCESS` notification goes to the trade's `notify_url`, retried on any
non-2xx answer as WeChat does (on a shorter schedule). Refunds settle asynchronously with `REFUND.SUCCESS`.
Answers and notifications carry WeChat's headers (`Wechatpay-Signature-Type`, `Request-ID`) and its times are
Beijing time, `+08:00`, whatever the host's zone: WeChat Pay's own SDKs (`wechatpayv3` in our tests) accept them.
Run it with `uvicorn --factory deploy.local.sandboxes.wechatpay:create_app`; the local stack starts it for the order
service (`wire`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy.local.keys import ensure_secret, key_dir
from deploy.local.wiring import GATEWAY, Environments, Wiring
from services.order.payment.wechatpay import (
    encrypt_resource,
    load_private_key,
    load_public_key,
    parse_authorization,
    signed_headers,
    verify,
)
from shared.logging import configure_logging

NAME = "wechatpay-sandbox"
log = logging.getLogger(__name__)

# WeChat Pay states every time in Beijing time, RFC 3339 with `+08:00` (`2026-11-18T12:00:05+08:00`).
BEIJING = timezone(timedelta(hours=8))


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WECHATPAY_SANDBOX_", extra="ignore")

    mchid: str = "1900000001"
    merchant_serial_no: str = "SANDBOX-MERCHANT-SERIAL"
    merchant_public_key: str = ""  # PEM: verifies the merchant's requests
    platform_private_key: str = ""  # PEM: signs answers and notifications
    platform_public_key_id: str = "PUB_KEY_ID_SANDBOX"
    apiv3_key: str = ""
    refund_delay_seconds: float = 0.2
    # WeChat retries a failed notification 15 times over ~24 h; the sandbox keeps the shape, not the patience.
    retry_seconds: list[float] = [0.5, 1, 2, 5, 10, 30, 60]
    log_level: str = "INFO"


@dataclass
class Trade:
    out_trade_no: str
    appid: str
    description: str
    amount_fen: int
    openid: str
    notify_url: str
    prepay_id: str
    state: str = "NOTPAY"  # NOTPAY | SUCCESS | CLOSED | REFUND
    transaction_id: str | None = None
    success_time: str | None = None
    refunded_fen: int = 0


@dataclass
class RefundRecord:
    out_refund_no: str
    refund_id: str
    trade: Trade
    amount_fen: int
    notify_url: str
    status: str = "PROCESSING"
    success_time: str | None = None
    create_time: str = field(default_factory=lambda: _now_iso())


@dataclass
class Delivery:
    """One notification and how its delivery went."""

    id: str
    url: str
    body: str
    attempts: list[int | str] = field(default_factory=list)
    delivered: bool = False


class PayCommand(BaseModel):
    prepay_id: str


def _now_iso() -> str:
    return datetime.now(BEIJING).isoformat(timespec="seconds")


def _request_id() -> str:
    return secrets.token_hex(16).upper()


class WechatPayError(Exception):
    """A refusal in WeChat Pay's own shape: `{"code": ..., "message": ...}` with its HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers={"Request-ID": _request_id()})


class Sandbox:
    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.merchant_key = load_public_key(settings.merchant_public_key)
        self.platform_key = load_private_key(settings.platform_private_key)
        self.trades: dict[str, Trade] = {}
        self.by_prepay: dict[str, Trade] = {}
        self.refunds: dict[str, RefundRecord] = {}
        self.deliveries: dict[str, Delivery] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.http = httpx.AsyncClient(timeout=5)

    def signed(self, payload: dict[str, Any] | None, status: int = 200) -> Response:
        body = json.dumps(payload, ensure_ascii=False) if payload is not None else ""
        headers = signed_headers(self.platform_key, self.settings.platform_public_key_id, body)
        headers["Request-ID"] = _request_id()
        return Response(body, status_code=status, media_type="application/json", headers=headers)

    async def authenticate(self, request: Request) -> dict[str, Any] | None:
        """The request's JSON body, once its merchant signature verifies (a route dependency)."""
        body = (await request.body()).decode()
        fields = parse_authorization(request.headers.get("authorization", ""))
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        message = f"{request.method}\n{path}\n{fields.get('timestamp')}\n{fields.get('nonce_str')}\n{body}\n"
        if (
            not fields
            or fields.get("mchid") != self.settings.mchid
            or fields.get("serial_no") != self.settings.merchant_serial_no
            or not verify(self.merchant_key, message, fields.get("signature", ""))
        ):
            raise WechatPayError(401, "SIGN_ERROR", "签名错误")
        try:
            parsed: dict[str, Any] | None = json.loads(body) if body else None
        except ValueError as exc:
            raise WechatPayError(400, "PARAM_ERROR", "body is not JSON") from exc
        return parsed

    def notify(self, url: str, event_type: str, summary: str, original_type: str, plaintext: dict[str, Any]) -> str:
        notification_id = f"EV-{secrets.token_hex(10)}"
        body = json.dumps(
            {
                "id": notification_id,
                "create_time": _now_iso(),
                "resource_type": "encrypt-resource",
                "event_type": event_type,
                "summary": summary,
                "resource": encrypt_resource(self.settings.apiv3_key, plaintext, original_type),
            },
            ensure_ascii=False,
        )
        self.deliveries[notification_id] = Delivery(notification_id, url, body)
        self.spawn(self.deliver(notification_id))
        return notification_id

    def spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def deliver(self, notification_id: str, delay: float = 0.0) -> None:
        delivery = self.deliveries[notification_id]
        await asyncio.sleep(delay)
        for wait in [0.0, *self.settings.retry_seconds]:
            await asyncio.sleep(wait)
            # Each attempt is signed afresh, as WeChat's are (its timestamp is the attempt's).
            headers = signed_headers(self.platform_key, self.settings.platform_public_key_id, delivery.body)
            try:
                response = await self.http.post(
                    delivery.url,
                    content=delivery.body.encode(),
                    headers={**headers, "Request-ID": _request_id(), "Content-Type": "application/json"},
                )
                delivery.attempts.append(response.status_code)
                if response.is_success:
                    delivery.delivered = True
                    return
            except httpx.HTTPError as exc:
                delivery.attempts.append(type(exc).__name__)
        log.warning("notification given up", extra={"id": notification_id, "attempts": delivery.attempts})

    def transaction_view(self, trade: Trade) -> dict[str, Any]:
        view: dict[str, Any] = {
            "appid": trade.appid,
            "mchid": self.settings.mchid,
            "out_trade_no": trade.out_trade_no,
            "trade_type": "JSAPI",
            "trade_state": trade.state,
            "trade_state_desc": {
                "NOTPAY": "未支付",
                "SUCCESS": "支付成功",
                "CLOSED": "已关闭",
                "REFUND": "转入退款",
            }.get(trade.state, ""),
            "payer": {"openid": trade.openid},
            "amount": {"total": trade.amount_fen, "currency": "CNY"},
        }
        if trade.transaction_id:
            view |= {"transaction_id": trade.transaction_id, "success_time": trade.success_time, "bank_type": "OTHERS"}
            view["amount"] |= {"payer_total": trade.amount_fen, "payer_currency": "CNY"}
        return view

    def refund_view(self, refund: RefundRecord) -> dict[str, Any]:
        view: dict[str, Any] = {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": refund.trade.transaction_id,
            "out_trade_no": refund.trade.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "status": refund.status,
            "create_time": refund.create_time,
            "success_time": refund.success_time,
            "amount": {
                "total": refund.trade.amount_fen,
                "refund": refund.amount_fen,
                "payer_total": refund.trade.amount_fen,
                "payer_refund": refund.amount_fen,
                "currency": "CNY",
            },
        }
        return {key: value for key, value in view.items() if value is not None}  # WeChat omits what is not yet

    async def settle_refund(self, refund: RefundRecord) -> None:
        await asyncio.sleep(self.settings.refund_delay_seconds)
        refund.status, refund.success_time = "SUCCESS", _now_iso()
        view = self.refund_view(refund)
        plaintext = {
            "mchid": self.settings.mchid,
            "out_trade_no": view["out_trade_no"],
            "transaction_id": view["transaction_id"],
            "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_id,
            "refund_status": "SUCCESS",
            "success_time": refund.success_time,
            "user_received_account": view["user_received_account"],
            "amount": {k: view["amount"][k] for k in ("total", "refund", "payer_total", "payer_refund")},
        }
        self.notify(refund.notify_url, "REFUND.SUCCESS", "退款成功", "refund", plaintext)


async def _signed_body(request: Request) -> dict[str, Any] | None:
    sandbox: Sandbox = request.app.state.sandbox
    return await sandbox.authenticate(request)


# The JSON body of a request the merchant signed; anything else is refused with WeChat's SIGN_ERROR.
SignedBody = Annotated[dict[str, Any] | None, Depends(_signed_body)]


def create_app(settings: SandboxSettings | None = None) -> FastAPI:
    if settings is None:
        settings = SandboxSettings()
        configure_logging(NAME, settings.log_level)
    sandbox = Sandbox(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for task in list(sandbox.tasks):
            task.cancel()
        await sandbox.http.aclose()

    # Every /v3 route answers only requests the merchant signed.
    app = FastAPI(title="WeChat Pay v3 sandbox", version="0.1.0", lifespan=lifespan)
    app.state.sandbox = sandbox

    @app.exception_handler(WechatPayError)
    async def wechatpay_error(request: Request, exc: WechatPayError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": NAME}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready", "service": NAME}

    @app.post("/v3/pay/transactions/jsapi")
    async def jsapi(body: SignedBody) -> Response:
        try:
            assert body is not None
            out_trade_no, total = str(body["out_trade_no"]), int(body["amount"]["total"])
            openid, notify_url = str(body["payer"]["openid"]), str(body["notify_url"])
            appid, description = str(body["appid"]), str(body["description"])
        except (AssertionError, KeyError, TypeError, ValueError):
            return _error(400, "PARAM_ERROR", "缺少参数")
        if body.get("mchid") != settings.mchid:
            return _error(400, "MCH_NOT_EXISTS", "商户号不存在")
        if total <= 0:
            return _error(400, "PARAM_ERROR", "amount.total 必须大于 0")
        trade = sandbox.trades.get(out_trade_no)
        if trade is not None:
            if trade.state == "SUCCESS":
                return _error(400, "ORDERPAID", "该订单已支付")
            if trade.state == "CLOSED":
                return _error(400, "ORDER_CLOSED", "订单已关闭")
            if trade.amount_fen != total:
                return _error(400, "INVALID_REQUEST", "201 商户订单号重复")
            return sandbox.signed({"prepay_id": trade.prepay_id})
        trade = Trade(out_trade_no, appid, description, total, openid, notify_url, f"wx{secrets.token_hex(14)}")
        sandbox.trades[out_trade_no] = trade
        sandbox.by_prepay[trade.prepay_id] = trade
        return sandbox.signed({"prepay_id": trade.prepay_id})

    @app.get("/v3/pay/transactions/out-trade-no/{out_trade_no}")
    async def query(out_trade_no: str, _: SignedBody) -> Response:
        trade = sandbox.trades.get(out_trade_no)
        if trade is None:
            return _error(404, "ORDER_NOT_EXIST", "订单不存在")
        return sandbox.signed(sandbox.transaction_view(trade))

    @app.get("/v3/pay/transactions/id/{transaction_id}")
    async def query_by_transaction(transaction_id: str, _: SignedBody) -> Response:
        trade = next((t for t in sandbox.trades.values() if t.transaction_id == transaction_id), None)
        if trade is None:
            return _error(404, "ORDER_NOT_EXIST", "订单不存在")
        return sandbox.signed(sandbox.transaction_view(trade))

    @app.post("/v3/pay/transactions/out-trade-no/{out_trade_no}/close")
    async def close(out_trade_no: str, _: SignedBody) -> Response:
        trade = sandbox.trades.get(out_trade_no)
        if trade is None:
            return _error(404, "ORDER_NOT_EXIST", "订单不存在")
        if trade.state in ("SUCCESS", "REFUND"):  # a paid trade stays paid, refunded or not
            return _error(400, "ORDERPAID", "订单已支付")
        trade.state = "CLOSED"
        return sandbox.signed(None, status=204)

    @app.post("/v3/refund/domestic/refunds")
    async def refund(body: SignedBody) -> Response:
        try:
            assert body is not None
            out_refund_no, amount = str(body["out_refund_no"]), int(body["amount"]["refund"])
            # WeChat names the trade by transaction_id, or by out_trade_no when there is none.
            if body.get("transaction_id"):
                trade = next((t for t in sandbox.trades.values() if t.transaction_id == body["transaction_id"]), None)
            else:
                trade = sandbox.trades.get(str(body.get("out_trade_no")))
            total, notify_url = int(body["amount"]["total"]), str(body.get("notify_url") or "")
        except (AssertionError, KeyError, TypeError, ValueError):
            return _error(400, "PARAM_ERROR", "缺少参数")
        existing = sandbox.refunds.get(out_refund_no)
        if existing is not None:  # the same out_refund_no is the same refund
            return sandbox.signed(sandbox.refund_view(existing))
        if trade is None:
            return _error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        if trade.state not in ("SUCCESS", "REFUND"):
            return _error(403, "TRADE_STATE_ERROR", "订单状态错误")
        if total != trade.amount_fen or amount <= 0:
            return _error(400, "PARAM_ERROR", "订单金额或退款金额与之前请求不一致")
        if trade.refunded_fen + amount > trade.amount_fen:
            return _error(403, "NOT_ENOUGH", "可退金额不足")
        trade.refunded_fen += amount
        trade.state = "REFUND"
        record = RefundRecord(
            out_refund_no, f"50{secrets.token_hex(12)}", trade, amount, notify_url or trade.notify_url
        )
        sandbox.refunds[out_refund_no] = record
        sandbox.spawn(sandbox.settle_refund(record))
        return sandbox.signed(sandbox.refund_view(record))

    @app.get("/v3/refund/domestic/refunds/{out_refund_no}")
    async def refund_query(out_refund_no: str, _: SignedBody) -> Response:
        record = sandbox.refunds.get(out_refund_no)
        if record is None:
            return _error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return sandbox.signed(sandbox.refund_view(record))

    # --- the customer's side, and inspection: sandbox only -------------------------------------------------

    @app.post("/sandbox/pay", summary="Play the customer paying a prepay id; the notification follows")
    async def pay(command: PayCommand) -> Response:
        trade = sandbox.by_prepay.get(command.prepay_id)
        if trade is None:
            return _error(404, "ORDER_NOT_EXIST", "prepay_id 不存在")
        if trade.state != "NOTPAY":
            return _error(400, "ORDERPAID" if trade.state == "SUCCESS" else "ORDER_CLOSED", trade.state)
        trade.state, trade.success_time = "SUCCESS", _now_iso()
        trade.transaction_id = f"4200{secrets.token_hex(12)}"
        notification_id = sandbox.notify(
            trade.notify_url, "TRANSACTION.SUCCESS", "支付成功", "transaction", sandbox.transaction_view(trade)
        )
        return JSONResponse({"transaction_id": trade.transaction_id, "notification_id": notification_id})

    @app.post("/sandbox/notifications/{notification_id}/resend", summary="Send a notification again (a duplicate)")
    async def resend(notification_id: str) -> Response:
        if notification_id not in sandbox.deliveries:
            return _error(404, "RESOURCE_NOT_EXISTS", "notification not found")
        sandbox.spawn(sandbox.deliver(notification_id))
        return Response(status_code=202)

    @app.get("/sandbox/notifications", summary="Every notification sent and how its delivery went")
    async def notifications() -> list[dict[str, Any]]:
        return [
            {"id": d.id, "url": d.url, "attempts": d.attempts, "delivered": d.delivered, "body": json.loads(d.body)}
            for d in sandbox.deliveries.values()
        ]

    return app


def wire(wiring: Wiring) -> Environments:
    """The sandbox's keys (made once, kept with the stack's) and the order service's WeChat Pay settings pointing
    at it; notifications go to the gateway's public callback, as WeChat's do."""
    keys = key_dir(wiring.state_dir)
    pems = {}
    for name in ("wechatpay-merchant", "wechatpay-platform"):
        private = ensure_secret(keys / f"{name}.pem", _rsa_private_key)
        public = load_private_key(private).public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        pems[name] = (private, public.decode())
    apiv3_key = ensure_secret(keys / "wechatpay-apiv3.key", lambda: secrets.token_hex(16)).strip()
    settings = SandboxSettings()
    sandbox_env = {
        "WECHATPAY_SANDBOX_MCHID": settings.mchid,
        "WECHATPAY_SANDBOX_MERCHANT_SERIAL_NO": settings.merchant_serial_no,
        "WECHATPAY_SANDBOX_MERCHANT_PUBLIC_KEY": pems["wechatpay-merchant"][1],
        "WECHATPAY_SANDBOX_PLATFORM_PRIVATE_KEY": pems["wechatpay-platform"][0],
        "WECHATPAY_SANDBOX_PLATFORM_PUBLIC_KEY_ID": settings.platform_public_key_id,
        "WECHATPAY_SANDBOX_APIV3_KEY": apiv3_key,
    }
    order_env = {
        "ORDER_WECHATPAY_BASE_URL": wiring.urls[NAME],
        "ORDER_WECHATPAY_MCHID": settings.mchid,
        "ORDER_WECHATPAY_APPID": "wx-sandbox-app",
        "ORDER_WECHATPAY_MERCHANT_SERIAL_NO": settings.merchant_serial_no,
        "ORDER_WECHATPAY_MERCHANT_PRIVATE_KEY_FILE": str(keys / "wechatpay-merchant.pem"),
        "ORDER_WECHATPAY_PLATFORM_PUBLIC_KEY_ID": settings.platform_public_key_id,
        "ORDER_WECHATPAY_PLATFORM_PUBLIC_KEY": pems["wechatpay-platform"][1],
        "ORDER_WECHATPAY_APIV3_KEY": apiv3_key,
        "ORDER_WECHATPAY_NOTIFY_URL": f"{wiring.urls[GATEWAY]}/v1/payments/wechatpay/callback",
    }
    return {NAME: sandbox_env, "order": order_env}


def _rsa_private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
