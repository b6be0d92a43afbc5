"""The WeChat Pay sandbox against WeChat Pay's widely used Python SDK (`wechatpayv3`), a client nobody here wrote:
it signs the requests, verifies every answer's signature, and verifies and decrypts the notifications the sandbox
sends. Our own client refuses, as that SDK and WeChat's Java SDK do, an answer or notification whose
`Wechatpay-Signature-Type` is missing or another algorithm."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from wechatpayv3 import WeChatPay, WeChatPayType

from deploy.local.sandboxes.wechatpay import SandboxSettings
from deploy.local.sandboxes.wechatpay import create_app as create_sandbox
from services.order.payment.wechatpay import encrypt_resource, load_private_key, signed_headers
from tests.order.conftest import CUSTOMER, OrderHarness, PayKeys
from tests.support import eventually, serve

BEIJING_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")
APPID = "wx-sdk-app"


@dataclass
class Received:
    """Notifications as a merchant's endpoint receives them: headers and the raw body."""

    items: list[tuple[dict[str, str], str]] = field(default_factory=list)

    def of(self, event_type: str) -> list[tuple[dict[str, str], str]]:
        return [(h, b) for h, b in self.items if json.loads(b)["event_type"] == event_type]


@dataclass
class Sdk:
    pay: WeChatPay
    sandbox_url: str
    received: Received

    async def __call__(self, method: Callable[..., tuple[int, Any]], **kwargs: Any) -> tuple[int, Any]:
        """The SDK is synchronous (requests): it runs in a thread while the sandbox serves on this loop."""
        code, message = await asyncio.to_thread(method, **kwargs)
        return code, json.loads(message) if message else None


@pytest.fixture
async def sdk(pay_keys: PayKeys) -> AsyncIterator[Sdk]:
    received = Received()
    merchant = FastAPI()

    @merchant.post("/notify")
    async def notify(request: Request) -> Response:
        received.items.append((dict(request.headers), (await request.body()).decode()))
        return Response(status_code=204)

    settings = SandboxSettings(
        mchid="1900000001",
        merchant_public_key=pay_keys.merchant_public,
        platform_private_key=pay_keys.platform_private,
        apiv3_key=pay_keys.apiv3_key,
        refund_delay_seconds=0.05,
        retry_seconds=[0.2],
    )
    async with serve(merchant) as merchant_url, serve(create_sandbox(settings)) as sandbox_url:
        pay = WeChatPay(
            wechatpay_type=WeChatPayType.MINIPROG,
            mchid=settings.mchid,
            private_key=pay_keys.merchant_private,
            cert_serial_no=settings.merchant_serial_no,
            appid=APPID,
            apiv3_key=pay_keys.apiv3_key,
            notify_url=f"{merchant_url}/notify",
            public_key=pay_keys.platform_public,
            public_key_id=settings.platform_public_key_id,
            timeout=(5, 10),
        )
        pay._core._gate_way = sandbox_url  # the SDK's base URL: WeChat's, unless pointed elsewhere
        yield Sdk(pay, sandbox_url, received)


async def _notification(sdk: Sdk, event_type: str, count: int = 1) -> dict[str, Any]:
    async def arrived() -> bool:
        return len(sdk.received.of(event_type)) >= count

    await eventually(arrived, within=10)
    headers, body = sdk.received.of(event_type)[count - 1]
    # The SDK verifies the platform signature (type, serial, timestamp, nonce, body) and decrypts the resource.
    verified: dict[str, Any] | None = sdk.pay.callback(headers, body)
    assert verified is not None, f"the SDK did not verify the {event_type} notification"
    assert BEIJING_TIME.match(verified["create_time"]), verified["create_time"]
    assert headers["request-id"]
    return verified


async def test_jsapi_prepay_query_pay_notify_and_refund_through_the_sdk(sdk: Sdk) -> None:
    out_trade_no = f"SD{secrets.randbelow(10**16):016d}"
    code, prepay = await sdk(
        sdk.pay.pay,
        description="牛肉面 大碗",
        out_trade_no=out_trade_no,
        amount={"total": 3600, "currency": "CNY"},
        payer={"openid": "openid-alice"},
        pay_type=WeChatPayType.JSAPI,
    )
    assert code == 200
    assert prepay["prepay_id"].startswith("wx")
    code, trade = await sdk(sdk.pay.query, out_trade_no=out_trade_no)
    assert (code, trade["trade_state"], trade["appid"]) == (200, "NOTPAY", APPID)

    async with httpx.AsyncClient(base_url=sdk.sandbox_url) as customer:
        paid = await customer.post("/sandbox/pay", json={"prepay_id": prepay["prepay_id"]})
    assert paid.status_code == 200
    notification = await _notification(sdk, "TRANSACTION.SUCCESS")
    transaction = notification["resource"]
    assert (transaction["out_trade_no"], transaction["trade_state"]) == (out_trade_no, "SUCCESS")
    assert transaction["amount"]["total"] == 3600
    assert BEIJING_TIME.match(transaction["success_time"]), transaction["success_time"]
    code, trade = await sdk(sdk.pay.query, transaction_id=transaction["transaction_id"])
    assert (code, trade["trade_state"], trade["success_time"]) == (200, "SUCCESS", transaction["success_time"])

    out_refund_no = f"RF{out_trade_no}"
    code, refund = await sdk(
        sdk.pay.refund,
        out_refund_no=out_refund_no,
        amount={"refund": 1000, "total": 3600, "currency": "CNY"},
        transaction_id=transaction["transaction_id"],
        reason="少了一个卤蛋",
    )
    assert (code, refund["status"], refund["amount"]["refund"]) == (200, "PROCESSING", 1000)
    assert BEIJING_TIME.match(refund["create_time"]), refund["create_time"]
    assert "success_time" not in refund
    refunded = (await _notification(sdk, "REFUND.SUCCESS"))["resource"]
    assert (refunded["out_refund_no"], refunded["refund_status"]) == (out_refund_no, "SUCCESS")
    assert refunded["amount"]["refund"] == 1000
    assert BEIJING_TIME.match(refunded["success_time"]), refunded["success_time"]
    code, settled = await sdk(sdk.pay.query_refund, out_refund_no=out_refund_no)
    assert (code, settled["status"], settled["success_time"]) == (200, "SUCCESS", refunded["success_time"])
    # The same out_refund_no is the same refund, as at WeChat.
    code, again = await sdk(
        sdk.pay.refund,
        out_refund_no=out_refund_no,
        amount={"refund": 1000, "total": 3600, "currency": "CNY"},
        out_trade_no=out_trade_no,
    )
    assert (code, again["refund_id"]) == (200, refund["refund_id"])
    code, trade = await sdk(sdk.pay.query, out_trade_no=out_trade_no)
    assert (code, trade["trade_state"]) == (200, "REFUND")
    code, refusal = await sdk(sdk.pay.close, out_trade_no=out_trade_no)  # paid, then refunded: never closed
    assert (code, refusal["code"]) == (400, "ORDERPAID")


async def test_close_through_the_sdk(sdk: Sdk, pay_keys: PayKeys) -> None:
    out_trade_no = f"SD{secrets.randbelow(10**16):016d}"
    code, _ = await sdk(
        sdk.pay.pay,
        description="卤蛋",
        out_trade_no=out_trade_no,
        amount={"total": 300},
        payer={"openid": "openid-bob"},
        pay_type=WeChatPayType.JSAPI,
    )
    assert code == 200
    code, answer = await asyncio.to_thread(sdk.pay.close, out_trade_no=out_trade_no)
    assert (code, answer) in ((204, ""), (204, b""))  # the SDK verified the empty answer's signature too
    code, trade = await sdk(sdk.pay.query, out_trade_no=out_trade_no)
    assert (code, trade["trade_state"]) == (200, "CLOSED")
    # A request signed with a key that is not the merchant's is refused in WeChat's shape.
    sdk.pay._core._private_key = load_private_key(pay_keys.platform_private)
    code, refusal = await sdk(sdk.pay.query, out_trade_no=out_trade_no)
    assert (code, refusal["code"]) == (401, "SIGN_ERROR")


@pytest.mark.parametrize("signature_type", [None, "WECHATPAY2-SM2-WITH-SM3"])
async def test_our_client_refuses_a_notification_without_the_rsa_signature_type(
    harness: OrderHarness, pay_keys: PayKeys, signature_type: str | None
) -> None:
    h = harness
    await h.store()
    sku = (await h.product())["skus"][0]["id"]
    order = await h.place(sku)
    await h.client.post(f"/v1/orders/{order['id']}/payment", headers=CUSTOMER)
    transaction = {
        "appid": "wx-sandbox-app", "mchid": "1900000001", "out_trade_no": order["id"],
        "transaction_id": "4200000000000000000009", "trade_type": "JSAPI", "trade_state": "SUCCESS",
        "success_time": "2026-11-18T12:00:05+08:00", "payer": {"openid": "openid-alice"},
        "amount": {"total": order["total_fen"], "payer_total": order["total_fen"], "currency": "CNY"},
    }  # fmt: skip
    body = json.dumps(
        {"id": "EV-type", "create_time": "2026-11-18T12:00:06+08:00", "resource_type": "encrypt-resource",
         "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
         "resource": encrypt_resource(pay_keys.apiv3_key, transaction, "transaction")}
    )  # fmt: skip
    headers = signed_headers(load_private_key(pay_keys.platform_private), "PUB_KEY_ID_SANDBOX", body)
    genuine = dict(headers)
    if signature_type is None:
        del headers["Wechatpay-Signature-Type"]
    else:
        headers["Wechatpay-Signature-Type"] = signature_type
    refused = await h.client.post("/v1/payments/wechatpay/callback", content=body, headers=headers)
    assert refused.status_code == 400
    assert "signature type" in refused.json()["message"]
    assert (await h.order(order["id"]))["status"] == "pending_payment"
    # The very same notification with WeChat's header is applied: only the type was wrong.
    accepted = await h.client.post("/v1/payments/wechatpay/callback", content=body, headers=genuine)
    assert accepted.status_code == 204
    assert (await h.order(order["id"]))["status"] == "paid"
