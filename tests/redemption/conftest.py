"""The redemption service on a real port over a fresh database; order events fed through its real consumer path;
time on a FrozenClock that tests move (token rotation, reversal windows, expiry, lockouts)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from services.redemption.app import create_app
from services.redemption.settings import RedemptionSettings
from shared.clock import FrozenClock
from shared.events.envelope import new_event
from shared.handover import HEADER, Voucher, VoucherSigner
from shared.keys import public_pem
from shared.vault import new_key
from tests.harness import ServiceHarness, served
from tests.support import HANDOVER_KEY, JWT_KEY, bearer

START = datetime(2026, 11, 18, 4, 0, 7, tzinfo=UTC)
CUSTOMER = bearer("customer", "openid-alice")
OTHER_CUSTOMER = bearer("customer", "openid-bob")
MERCHANT = bearer("merchant", "staff-1", "m-1", store_ids=["s-1"])
OTHER_MERCHANT = bearer("merchant", "staff-2", "m-2")
RIDER = bearer("rider", "rider-1", "m-1")
OTHER_RIDER = bearer("rider", "rider-9", "m-2")
OPS = bearer("ops", "ops-1")
HANDOVER_PUBLIC = public_pem(serialization.load_pem_private_key(HANDOVER_KEY.encode(), password=None))  # type: ignore[arg-type]


def redemption_settings(database_url: str, bootstrap: str, **overrides: Any) -> RedemptionSettings:
    defaults: dict[str, Any] = {
        "database_pool_size": 20,
        "jwt_public_keys": public_pem(JWT_KEY),  # type: ignore[arg-type]
        "run_workers": False,
        "vault_key": new_key(),
        "handover_public_keys": HANDOVER_PUBLIC,
    }
    return RedemptionSettings(database_url=database_url, kafka_bootstrap_servers=bootstrap, **defaults | overrides)


@dataclass
class RedemptionHarness(ServiceHarness):
    requests: int = 0

    async def order_paid(
        self, order_id: str = "o-1", mode: str = "pickup", *, accepted: bool = True, **overrides: Any
    ) -> dict[str, Any]:
        """The order service says the order is paid (and, unless told otherwise, accepted); returns the code the
        customer then sees."""
        data = {
            "order_id": order_id,
            "status": "paid",
            "fulfilment_mode": mode,
            "customer_id": "openid-alice",
            "merchant_id": "m-1",
            "store": {"id": "s-1", "name": "面馆"},
            "items": [{"name": "牛肉面 大碗", "price_fen": 1500, "quantity": 2}],
            "amounts": {"total_fen": 3000},
            **overrides,
        }
        await self.feed.deliver(
            new_event("order.paid.v1", source="order", subject=order_id, data=data, clock=self.clock)
        )
        if accepted:
            accept = data | {"status": "accepted"}
            await self.feed.deliver(
                new_event("order.accepted.v1", source="order", subject=order_id, data=accept, clock=self.clock)
            )
        page = (await self.client.get(f"/v1/codes?order_id={order_id}", headers=CUSTOMER)).json()
        return dict(page["items"][0]) if page["items"] else {}

    async def order_event(self, event_type: str, order_id: str, **data: Any) -> None:
        event = new_event(
            event_type, source="order", subject=order_id, data={"order_id": order_id, **data}, clock=self.clock
        )
        await self.feed.deliver(event)

    async def redeem(
        self,
        *,
        code: str | None = None,
        qr_token: str | None = None,
        request_no: str | None = None,
        headers: dict[str, str] = MERCHANT,
        store_id: str | None = "s-1",
        **extra: Any,
    ) -> httpx.Response:
        self.requests += 1
        body = {"request_no": request_no or f"req-{self.requests:06d}", "store_id": store_id, **extra}
        body |= {"code": code} if code is not None else {"qr_token": qr_token}
        return await self.client.post("/v1/redemptions", json=body, headers=headers)

    def handover(
        self, order_id: str, rider: str = "rider-1", merchant: str = "m-1", key: str = HANDOVER_KEY
    ) -> dict[str, str]:
        """The voucher dispatch sends with a rider's handover of the delivery of `order_id`."""
        voucher = Voucher(rider, merchant, f"d-{order_id}", order_id)
        return {HEADER: VoucherSigner(key, 60).sign(voucher, self.clock.now())}

    async def voucher(self, uses: int = 5) -> dict[str, Any]:
        response = await self.client.post(
            "/v1/codes/vouchers",
            json={
                "store_id": "s-1",
                "customer_id": "openid-alice",
                "title": "洗车 5 次卡",
                "uses": uses,
                "valid_until": "2026-12-31T16:00:00Z",
            },
            headers=MERCHANT,
        )
        assert response.status_code == 201, response.text
        voucher = dict(response.json())
        mine = (await self.client.get(f"/v1/codes/{voucher['id']}", headers=CUSTOMER)).json()
        return dict(mine)


@contextlib.asynccontextmanager
async def redemption_stack(db_url: str, bootstrap: str) -> AsyncIterator[RedemptionHarness]:
    clock = FrozenClock(START)
    async with served(create_app(redemption_settings(db_url, bootstrap), clock=clock), RedemptionHarness) as harness:
        yield harness


@pytest.fixture
async def redemption(redemption_db_url: str, bootstrap: str) -> AsyncIterator[RedemptionHarness]:
    async with redemption_stack(redemption_db_url, bootstrap) as stack:
        yield stack
