"""The order service on a real port, over a fresh migrated database, paying through the WeChat Pay sandbox on
another real port (see tests/harness.py for how timers and events are driven)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deploy.local.ports import free_port
from deploy.local.sandboxes.wechatpay import SandboxSettings
from deploy.local.sandboxes.wechatpay import create_app as create_sandbox
from services.order.app import create_app
from services.order.settings import OrderSettings
from shared.clock import FrozenClock
from shared.events.envelope import Envelope, new_event
from shared.keys import public_pem
from tests.harness import ServiceHarness, served
from tests.support import JWT_KEY, bearer, eventually, serve

# A Wednesday, 12:00 in Shanghai: the demo stores are open.
NOON_SHANGHAI = datetime(2026, 11, 18, 4, 0, tzinfo=UTC)
STORE_LAT, STORE_LNG = 39.9087, 116.3975


def _rsa_pem() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@dataclass(frozen=True)
class PayKeys:
    merchant_private: str
    merchant_public: str
    platform_private: str
    platform_public: str
    apiv3_key: str


def new_pay_keys() -> PayKeys:
    merchant, platform = _rsa_pem(), _rsa_pem()
    return PayKeys(merchant[0], merchant[1], platform[0], platform[1], secrets.token_hex(16))


@pytest.fixture(scope="session")
def pay_keys() -> PayKeys:
    return new_pay_keys()


CUSTOMER = bearer("customer", "openid-alice")
OTHER_CUSTOMER = bearer("customer", "openid-bob")
# Staff of store s-1 only; OWNER is merchant m-1's merchant-wide account, which opens its stores.
MERCHANT = bearer("merchant", "staff-1", "m-1", store_ids=["s-1"])
OWNER = bearer("merchant", "owner", "m-1")
OTHER_MERCHANT = bearer("merchant", "staff-2", "m-2")
RIDER = bearer("rider", "rider-1", "m-1")
OPS = bearer("ops", "ops-1")


@dataclass
class OrderHarness(ServiceHarness):
    sandbox: httpx.AsyncClient

    async def store(self, store_id: str = "s-1", headers: dict[str, str] = OWNER, **fields: Any) -> dict[str, Any]:
        body = {
            "id": store_id,
            "name": f"Store {store_id}",
            "phone": "010-12345678",
            "address": "东城区 1 号",
            "lat": STORE_LAT,
            "lng": STORE_LNG,
            "opening_hours": [{"open": "09:00", "close": "22:00"}],
            "range_radius_m": 3000,
            "min_order_fen": 2000,
            "delivery_base_fen": 500,
            "delivery_tiers": [{"above_m": 1000, "add_fen": 100}, {"above_m": 2000, "add_fen": 200}],
            "free_delivery_above_fen": 10000,
            "fulfilment_modes": ["delivery", "pickup", "express"],
            **fields,
        }
        response = await self.client.post("/v1/stores", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def product(
        self, store_id: str = "s-1", *, price_fen: int = 1500, stock: int = 100, headers: dict[str, str] = MERCHANT
    ) -> dict[str, Any]:
        response = await self.client.post(
            f"/v1/stores/{store_id}/products",
            json={"name": "牛肉面", "skus": [{"name": "大碗", "price_fen": price_fen, "stock": stock}]},
            headers=headers,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def place(
        self,
        sku_id: str,
        *,
        quantity: int = 2,
        store_id: str = "s-1",
        mode: str = "delivery",
        headers: dict[str, str] = CUSTOMER,
        lat: float = STORE_LAT + 0.01,
        lng: float = STORE_LNG,
        expect: int = 201,
        **extra: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "store_id": store_id,
            "items": [{"sku_id": sku_id, "quantity": quantity}],
            "fulfilment_mode": mode,
            "contact": {"name": "Alice", "phone": "13800000000"},
            **extra,
        }
        if mode != "pickup":
            body.setdefault("address", {"text": "建国路 88 号", "lat": lat, "lng": lng})
        response = await self.client.post("/v1/orders", json=body, headers=headers)
        assert response.status_code == expect, response.text
        return dict(response.json())

    async def pay(self, order_id: str, headers: dict[str, str] = CUSTOMER) -> dict[str, Any]:
        """Prepay, then the sandbox customer pays; returns the order once the notification made it paid."""
        payment = await self.client.post(f"/v1/orders/{order_id}/payment", headers=headers)
        assert payment.status_code == 200, payment.text
        paid = await self.sandbox.post("/sandbox/pay", json={"prepay_id": payment.json()["prepay_id"]})
        assert paid.status_code == 200, paid.text

        async def is_paid() -> bool:
            return (await self.order(order_id))["status"] != "pending_payment"

        await eventually(is_paid, within=10)
        return await self.order(order_id)

    async def order(self, order_id: str, headers: dict[str, str] = OPS) -> dict[str, Any]:
        response = await self.client.get(f"/v1/orders/{order_id}", headers=headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def act(self, order_id: str, action: str, headers: dict[str, str] = MERCHANT, **body: Any) -> httpx.Response:
        return await self.client.post(f"/v1/orders/{order_id}/{action}", json=body or None, headers=headers)

    async def paid_order(self, sku_id: str, **place: Any) -> dict[str, Any]:
        order = await self.place(sku_id, **place)
        return await self.pay(order["id"])

    async def deliver(self, event_type: str, order_id: str, **data: Any) -> Envelope:
        """Delivers an event through the consumer's real path (inbox dedupe, handler, one transaction)."""
        source = event_type.split(".")[0]
        event = new_event(event_type, source={"delivery": "dispatch", "code": "redemption"}.get(source, source),
                          subject=order_id, data={"order_id": order_id, **data}, clock=self.clock)  # fmt: skip
        await self.redeliver(event)
        return event

    async def redeliver(self, event: Envelope) -> None:
        await self.feed.deliver(event)


@contextlib.asynccontextmanager
async def order_stack(db_url: str, bootstrap: str, pay_keys: PayKeys) -> AsyncIterator[OrderHarness]:
    clock = FrozenClock(NOON_SHANGHAI)
    order_port = free_port()
    sandbox_settings = SandboxSettings(
        mchid="1900000001",
        merchant_public_key=pay_keys.merchant_public,
        platform_private_key=pay_keys.platform_private,
        apiv3_key=pay_keys.apiv3_key,
        refund_delay_seconds=0.05,
        retry_seconds=[0.2, 0.5],
    )
    async with serve(create_sandbox(sandbox_settings)) as sandbox_url:
        settings = OrderSettings(
            database_url=db_url,
            kafka_bootstrap_servers=bootstrap,
            jwt_public_keys=public_pem(JWT_KEY),  # type: ignore[arg-type]
            run_workers=False,
            wechatpay_base_url=sandbox_url,
            wechatpay_mchid="1900000001",
            wechatpay_appid="wx-sandbox-app",
            wechatpay_merchant_serial_no=sandbox_settings.merchant_serial_no,
            wechatpay_merchant_private_key=pay_keys.merchant_private,
            wechatpay_platform_public_key_id=sandbox_settings.platform_public_key_id,
            wechatpay_platform_public_key=pay_keys.platform_public,
            wechatpay_apiv3_key=pay_keys.apiv3_key,
            wechatpay_notify_url=f"http://127.0.0.1:{order_port}/v1/payments/wechatpay/callback",
        )
        async with (
            httpx.AsyncClient(base_url=sandbox_url, timeout=30) as sandbox,
            served(
                create_app(settings, clock=clock), OrderHarness, port=order_port, client_timeout=30, sandbox=sandbox
            ) as harness,
        ):
            yield harness


@pytest.fixture
async def harness(db_url: str, bootstrap: str, pay_keys: PayKeys) -> AsyncIterator[OrderHarness]:
    async with order_stack(db_url, bootstrap, pay_keys) as stack:
        yield stack
