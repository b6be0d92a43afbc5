"""Orders walked through the gateway as the demo does (customer, WeChat Pay sandbox, merchant), asynchronously, with
the waiting done on the order database rather than by polling the API (which would load what is measured)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx

from deploy.bench.context import Bench
from deploy.local.demo import CUSTOMER_LAT, CUSTOMER_LNG
from deploy.local.sandboxes.wechatpay import NAME as WECHATPAY_SANDBOX
from deploy.local.seed import DEMO_STORE_ID


class WalkFailed(RuntimeError):
    pass


async def order_status(connection: asyncpg.Connection, order_id: str) -> str:
    return str(await connection.fetchval("SELECT status FROM customer_order WHERE id = $1", order_id))


async def wait_status(connection: asyncpg.Connection, order_id: str, wanted: set[str], within: float) -> str:
    deadline = time.monotonic() + within
    while True:
        status = await order_status(connection, order_id)
        if status in wanted:
            return status
        if time.monotonic() > deadline:
            raise WalkFailed(f"order {order_id} is {status}, not {sorted(wanted)} after {within:.0f} s")
        await asyncio.sleep(0.25)


async def call(client: httpx.AsyncClient, bench: Bench, role: str, method: str, path: str, **kwargs: Any) -> Any:
    response = await client.request(method, path, headers={**bench.auth(role), **kwargs.pop("headers", {})}, **kwargs)
    if response.status_code >= 400:
        raise WalkFailed(f"{method} {path} as {role} → {response.status_code}: {response.text[:300]}")
    return response.json() if response.content else None


async def first_sku(client: httpx.AsyncClient, bench: Bench) -> str:
    products = await call(client, bench, "customer", "GET", f"/v1/stores/{DEMO_STORE_ID}/products")
    return str(products["items"][0]["skus"][0]["id"])


async def place_paid_order(
    client: httpx.AsyncClient, orders: asyncpg.Connection, bench: Bench, sku: str, note: str
) -> str:
    """A delivery order placed and paid through the sandbox; returns its id once the order service saw the payment."""
    body = {"store_id": DEMO_STORE_ID, "items": [{"sku_id": sku, "quantity": 1}], "fulfilment_mode": "delivery",
            "contact": {"name": "压测顾客", "phone": "13800000000"}, "note": note,
            "address": {"text": "东城区王府井大街 100 号", "lat": CUSTOMER_LAT, "lng": CUSTOMER_LNG}}  # fmt: skip
    order = await call(client, bench, "customer", "POST", "/v1/orders", json=body,
                       headers={"Idempotency-Key": uuid.uuid4().hex})  # fmt: skip
    payment = await call(client, bench, "customer", "POST", f"/v1/orders/{order['id']}/payment")
    paid = await client.post(bench.url(WECHATPAY_SANDBOX) + "/sandbox/pay", json={"prepay_id": payment["prepay_id"]})
    paid.raise_for_status()
    await wait_status(orders, order["id"], {"paid", "accepted"}, within=60)
    return str(order["id"])
