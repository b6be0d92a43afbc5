"""The notify service on a real port over a fresh migrated database, workers off, with the WeChat and Tencent SMS
sandboxes and a merchant's webhook receiver served beside it. Events arrive through the real consumer path
(`deliver`, inbox included); the courier and the webhook sender run one round when the test says (`send`,
`push_webhooks`), on a FrozenClock the test moves."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from deploy.local.sandboxes import tencent_sms, wechat_api
from services.notify.app import create_app
from services.notify.courier import Courier
from services.notify.settings import NotifySettings
from services.notify.webhook_sender import WebhookSender
from shared.clock import FrozenClock
from shared.events.envelope import Envelope, new_event
from shared.keys import public_pem
from shared.vault import new_key
from tests.harness import ServiceHarness, served
from tests.support import JWT_KEY, bearer, serve

APPID = "wx-test-app"
WECHAT_SECRET = "wechat-secret"
SMS_KEY = "sms-secret-key"
CUSTOMER_ID = "openid-alice"
CUSTOMER = bearer("customer", CUSTOMER_ID)
OTHER_CUSTOMER = bearer("customer", "openid-bob")
MERCHANT = bearer("merchant", "staff-1", "m-1")
STORE_STAFF = bearer("merchant", "staff-2", "m-1", store_ids=["s-1"])
OTHER_STORE_STAFF = bearer("merchant", "staff-9", "m-1", store_ids=["s-9"])
OTHER_MERCHANT = bearer("merchant", "staff-3", "m-2")
OPS = bearer("ops", "ops-1")
PHONE = "13800138000"
SOURCES = {"delivery": "dispatch", "code": "redemption"}
TEMPLATES = {
    "rider_accepted": "tmpl-rider",
    "delivering": "tmpl-delivering",
    "delivered": "tmpl-delivered",
    "delivery_problem": "tmpl-problem",
}


def order_snapshot(order_id: str, **fields: Any) -> dict[str, Any]:
    """An order as the order service's events carry it (the fields notify reads, and more)."""
    snapshot = {
        "order_id": order_id,
        "status": "paid",
        "fulfilment_mode": "delivery",
        "customer_id": CUSTOMER_ID,
        "merchant_id": "m-1",
        "store": {"id": "s-1", "name": "兰州牛肉面(人民路店)", "phone": "0571-1", "address": "人民路 1 号",
                  "lat": 30.0, "lng": 120.0, "prep_minutes": 15},
        "contact": {"name": "Alice", "phone": PHONE},
        "amounts": {"items_fen": 3300, "delivery_fee_fen": 500, "total_fen": 3800, "refunded_fen": 0},
        "items": [],
    }  # fmt: skip
    return snapshot | fields


def delivery_facts(order_id: str, status: str, **fields: Any) -> dict[str, Any]:
    facts = {
        "delivery_id": f"d-{order_id}", "order_id": order_id, "merchant_id": "m-1", "store_id": "s-1",
        "customer_id": CUSTOMER_ID, "status": status, "carrier": "dada", "waybill_id": "W1",
        "rider": {"id": "r-1", "name": "张三", "phone": "13900001111"}, "fee_fen": 600, "tip_fen": 0,
        "cancel_fee_fen": 0, "reason": None, "eta": None,
    }  # fmt: skip
    return facts | fields


class WebhookReceiver:
    """A merchant's endpoint: answers the statuses queued in `script` (then 200) and keeps what it got."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> Response:
            status = self.script.pop(0) if self.script else 200
            self.received.append((dict(request.headers), await request.body(), status))
            return Response(status_code=status)

    def delivered(self) -> list[tuple[dict[str, str], bytes]]:
        """What it accepted (answered 2xx)."""
        return [(headers, body) for headers, body, status in self.received if 200 <= status < 300]


@dataclass
class NotifyHarness(ServiceHarness):
    service_app: FastAPI = field(default=None)  # type: ignore[assignment]
    wechat: httpx.AsyncClient = field(default=None)  # type: ignore[assignment]
    sms: httpx.AsyncClient = field(default=None)  # type: ignore[assignment]
    receiver: WebhookReceiver = field(default=None)  # type: ignore[assignment]
    receiver_url: str = ""

    @property
    def courier(self) -> Courier:
        courier: Courier = self.service_app.state.courier(self.service_app)
        return courier

    @property
    def webhook_sender(self) -> WebhookSender:
        sender: WebhookSender = self.service_app.state.webhook_sender(self.service_app)
        return sender

    async def deliver(self, event_type: str, subject: str, **data: Any) -> Envelope:
        source = SOURCES.get(event_type.split(".")[0], event_type.split(".")[0])
        event = new_event(event_type, source=source, subject=subject, data=data, clock=self.clock)
        await self.feed.deliver(event)
        return event

    async def order(self, order_id: str, event: str = "order.paid.v1", **fields: Any) -> Envelope:
        return await self.deliver(event, order_id, **order_snapshot(order_id, **fields))

    async def delivery(self, order_id: str, name: str, status: str, **fields: Any) -> Envelope:
        return await self.deliver(f"delivery.{name}.v1", order_id, **delivery_facts(order_id, status, **fields))

    async def grant(self, template_id: str, times: int = 1, customer: dict[str, str] = CUSTOMER,
                    openid: str = CUSTOMER_ID) -> None:  # fmt: skip
        """The customer accepts the template `times` times: WeChat knows, and the mini-program tells us."""
        for _ in range(times):
            response = await self.wechat.post("/sandbox/grants", json={"openid": openid, "template_id": template_id})
            assert response.status_code == 200, response.text
            answer = await self.client.post("/v1/subscriptions", json={"results": {template_id: "accept"}},
                                            headers=customer)  # fmt: skip
            assert answer.status_code == 200, answer.text

    async def use_templates(self, sms_fallback: bool = True, headers: dict[str, str] = MERCHANT) -> None:
        """The merchant's four delivery notices: a WeChat template each, and an SMS stand-in."""
        for notice, template_id in TEMPLATES.items():
            body = {
                "template_id": template_id,
                "fields": {"character_string1": "order_no", "thing2": "store_name", "phrase3": "status",
                           "name4": "rider_name", "thing5": "remark"},
                "sms_fallback": sms_fallback, "sms_template_id": "100001", "sms_params": ["status", "order_no"],
            }  # fmt: skip
            response = await self.client.put(f"/v1/notifications/templates/{notice}", json=body, headers=headers)
            assert response.status_code == 200, response.text

    async def send(self) -> int:
        return await self.courier.send_due()

    async def push_webhooks(self) -> int:
        return await self.webhook_sender.send_due()

    async def wechat_messages(self, openid: str = CUSTOMER_ID) -> list[dict[str, Any]]:
        response = await self.wechat.get("/sandbox/messages", params={"touser": openid})
        return list(response.json())

    async def sms_messages(self) -> list[dict[str, Any]]:
        response = await self.sms.get("/sandbox/messages")
        return list(response.json())

    async def notices(self, order_id: str, headers: dict[str, str] = MERCHANT) -> list[dict[str, Any]]:
        response = await self.client.get("/v1/notifications/notices", params={"order_id": order_id}, headers=headers)
        assert response.status_code == 200, response.text
        return list(response.json())


@contextlib.asynccontextmanager
async def notify_stack(db_url: str, bootstrap: str, **overrides: Any) -> AsyncIterator[NotifyHarness]:
    receiver = WebhookReceiver()
    wechat_app = wechat_api.create_app(wechat_api.SandboxSettings(appid=APPID, secret=WECHAT_SECRET))
    sms_app = tencent_sms.create_app(tencent_sms.SandboxSettings(secret_key=SMS_KEY))
    async with serve(wechat_app) as wechat_url, serve(sms_app) as sms_url, serve(receiver.app) as receiver_url:
        values: dict[str, Any] = {
            "database_url": db_url, "kafka_bootstrap_servers": bootstrap, "jwt_public_keys": public_pem(JWT_KEY),
            "run_workers": False, "vault_key": new_key(), "wechat_api_url": wechat_url, "wechat_appid": APPID,
            "wechat_secret": WECHAT_SECRET, "sms_url": f"{sms_url}/", "sms_secret_id": "AKIDsandbox",
            "sms_secret_key": SMS_KEY, "sms_sdk_app_id": "1400000000", "sms_sign_name": "送达",
            "webhook_allow_private_targets": True,
        }  # fmt: skip
        settings = NotifySettings(**(values | overrides))
        # Real time: receivers check `webhook-timestamp` against their own clock.
        app = create_app(settings, clock=FrozenClock(datetime.now(UTC)))
        async with (
            httpx.AsyncClient(base_url=wechat_url) as wechat,
            httpx.AsyncClient(base_url=sms_url) as sms,
            served(app, NotifyHarness, service_app=app, wechat=wechat, sms=sms, receiver=receiver,
                   receiver_url=f"{receiver_url}/hook") as harness,
        ):  # fmt: skip
            yield harness


@pytest.fixture
async def notify(notify_db_url: str, bootstrap: str) -> AsyncIterator[NotifyHarness]:
    async with notify_stack(notify_db_url, bootstrap) as stack:
        yield stack
