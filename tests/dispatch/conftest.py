"""The dispatch service on a real port over a fresh database, talking to the carrier simulator on another real port
(which calls the dispatch service back, signed); order events fed through the real consumer path; timers fired by
the test (or by a background loop for the long runs) on a FrozenClock that tests move."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from deploy.local.ports import free_port
from deploy.local.sandboxes.carriers.simulator import SimulatorSettings, credentials
from deploy.local.sandboxes.carriers.simulator import create_app as create_simulator
from services.dispatch.app import create_app
from services.dispatch.callback_queue import CallbackQueue
from services.dispatch.service import Dispatcher
from services.dispatch.settings import DispatchSettings
from shared.clock import FrozenClock
from shared.events.envelope import new_event
from shared.keys import public_pem
from shared.vault import new_key
from tests.harness import ServiceHarness, served
from tests.support import HANDOVER_KEY, JWT_KEY, bearer, eventually, serve

MERCHANT = bearer("merchant", "staff-1", "m-1", store_ids=["s-1"])
OTHER_MERCHANT = bearer("merchant", "staff-2", "m-2")
OPS = bearer("ops", "ops-1")
CUSTOMER = bearer("customer", "openid-alice")
MASTER_KEY = "test-master"
WECHAT_APPID = "wx-songda-test"
STORE = {
    "id": "s-1",
    "name": "面馆",
    "phone": "010-88886666",
    "address": "建国路 1 号",
    "lat": 39.9087,
    "lng": 116.3975,
}


@dataclass
class DispatchHarness(ServiceHarness):
    sim: httpx.AsyncClient
    dispatcher: Dispatcher
    orders: int = 0
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def bind(
        self, carrier: str, store_id: str = "s-1", headers: dict[str, str] = MERCHANT, **extra: Any
    ) -> dict[str, Any]:
        """Gets an account from the simulator's console and binds it to the store."""
        account = (await self.sim.post("/_sim/accounts", json={"carrier": carrier})).json()
        body = {"store_id": store_id, "carrier": carrier, **{k: account[k] for k in
                ("app_key", "app_secret", "shop_id", "merchant_no", "token")}, **extra}  # fmt: skip
        if carrier.startswith("wechat") and "brand" not in extra:
            body["brand"] = "SFTC"
        response = await self.client.post("/v1/carriers/accounts", json=body, headers=headers)
        assert response.status_code == 201, response.text
        self.accounts[carrier] = account
        return dict(response.json())

    async def order_ready(
        self,
        *,
        strategy: dict[str, Any] | None = None,
        note: str = "",
        order_id: str | None = None,
        store_id: str = "s-1",
    ) -> str:
        self.orders += 1
        order_id = order_id or f"SD261120{self.orders:016d}"
        data = {
            "order_id": order_id,
            "status": "ready",
            "fulfilment_mode": "delivery",
            "customer_id": "openid-alice",
            "merchant_id": "m-1",
            "store": STORE | {"id": store_id},
            "dispatch": {"trigger": "on_ready", "strategy": strategy or {"kind": "cheapest"}},
            "address": {"text": "朝阳区建国路 88 号", "lat": 39.9150, "lng": 116.4100},
            "contact": {"name": "Alice", "phone": "13900000000"},
            "note": note,
            "amounts": {"items_fen": 4200, "delivery_fee_fen": 500, "total_fen": 4700},
        }
        await self.feed.deliver(
            new_event("order.ready.v1", source="order", subject=order_id, data=data, clock=self.clock)
        )
        return order_id

    async def apply_callbacks(self) -> int:
        """Applies a batch of kept callbacks, as the apply worker does; returns how many it took."""
        return await CallbackQueue(self.dispatcher, self.sessionmaker, batch_size=100, poll_seconds=0).apply_pending()

    async def fire(self, rounds: int = 3) -> None:
        """Fires due timers and applies kept callbacks until none is left (placing, callbacks, cancels...), a few
        rounds for chains."""
        for _ in range(rounds):
            while await self.timers.fire_due() + await self.apply_callbacks():
                pass

    async def delivery(self, order_id: str) -> dict[str, Any]:
        page = (await self.client.get(f"/v1/deliveries?order_id={order_id}", headers=MERCHANT)).json()
        assert page["items"], f"no delivery for {order_id}"
        detail = (await self.client.get(f"/v1/deliveries/{page['items'][0]['id']}", headers=MERCHANT)).json()
        return dict(detail)

    async def settle(self, order_id: str, status: str, within: float = 20.0) -> dict[str, Any]:
        """Fires timers until the order's delivery reaches `status`."""
        seen: dict[str, Any] = {}

        async def reached() -> bool:
            await self.fire(1)
            seen.update(await self.delivery(order_id))
            return seen["status"] == status

        await eventually(reached, within=within, interval=0.05)
        return seen


@contextlib.asynccontextmanager
async def dispatch_stack(
    db_url: str, bootstrap: str, settings_overrides: dict[str, Any] | None = None, **sim_overrides: Any
) -> AsyncIterator[DispatchHarness]:
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))  # near real time: carriers check skew
    dispatch_port = free_port()
    sim_settings = SimulatorSettings(
        **{
            "master_key": MASTER_KEY,
            "callback_url": f"http://127.0.0.1:{dispatch_port}",
            "step_seconds": 0.02,
            "retry_seconds": [0.1, 0.2, 0.5, 1, 2],
            "seed": 7,
            **sim_overrides,
        }
    )
    async with serve(create_simulator(sim_settings)) as sim_url:
        settings = DispatchSettings(  # type: ignore[arg-type]
            **{
                "database_url": db_url,
                "database_pool_size": 20,
                "kafka_bootstrap_servers": bootstrap,
                "jwt_public_keys": public_pem(JWT_KEY),
                "run_workers": False,
                "vault_key": new_key(),
                "carrier_sandbox_url": sim_url,
                "wechat_appid": WECHAT_APPID,
                "wechat_secret": credentials(MASTER_KEY, "wechat", WECHAT_APPID).app_secret,
                "handover_signing_key": HANDOVER_KEY,
                **(settings_overrides or {}),
            }
        )
        app = create_app(settings, clock=clock)
        async with (
            httpx.AsyncClient(base_url=sim_url, timeout=60) as sim,
            served(app, DispatchHarness, port=dispatch_port, sim=sim, dispatcher=app.state.dispatcher) as harness,
        ):
            yield harness


@pytest.fixture
async def dispatch(dispatch_db_url: str, bootstrap: str) -> AsyncIterator[DispatchHarness]:
    async with dispatch_stack(dispatch_db_url, bootstrap) as harness:
        yield harness
