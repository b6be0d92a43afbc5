"""No input makes a service answer 5xx: every operation of every service's OpenAPI, fuzzed over HTTP through real
uvicorn on a real database, as a customer, merchant-wide staff, store-scoped staff, a rider and ops (see runner.py
for how the examples are chosen). Each service first gets a store, a product, an order, a code or a delivery, so
that half of the examples name things that exist."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence

import httpx

from deploy.local.ports import free_port
from gateway.app import create_app as create_gateway
from gateway.settings import GatewaySettings
from services.dispatch.carriers import WIRES
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from shared.keys import generate_signing_key, public_pem
from tests.aftersales.conftest import aftersales_stack
from tests.dispatch.conftest import dispatch_stack
from tests.fuzz.runner import ROLES, fuzz
from tests.order.conftest import new_pay_keys, order_stack
from tests.redemption.conftest import MERCHANT, redemption_stack
from tests.support import JWT_KEY, serve

# Examples per operation and role: about 70 operations, 5 roles, about a minute in all on two cores.
MAX_EXAMPLES = 6
# Operations whose 5xx is their contract: readiness answers 503 while the broker is not connected (workers are off).
NOT_FUZZED = ("/readyz",)


async def _no_server_error(
    client: httpx.AsyncClient,
    known_ids: Mapping[str, str | Sequence[str]],
    *,
    coverage: bool = True,
) -> None:
    base_url = str(client.base_url).rstrip("/")
    report = await asyncio.to_thread(
        fuzz, base_url, known_ids, max_examples=MAX_EXAMPLES, coverage=coverage, skip_paths=NOT_FUZZED
    )
    errors = list(report.errors.values())
    assert not errors, "server errors:\n" + "\n".join(map(str, errors))
    # Every operation was called, as every role, more than once.
    assert report.requests >= 2 * len(ROLES) * report.operations > 0
    print(f"{report.operations} operations, {report.requests} requests")


async def test_order_service(db_url: str, bootstrap: str) -> None:
    async with order_stack(db_url, bootstrap, new_pay_keys()) as order:
        await order.store("s-1")
        product = await order.product("s-1")
        sku_id = product["skus"][0]["id"]
        placed = await order.paid_order(sku_id)
        known = {"store_id": "s-1", "product_id": product["id"], "sku_id": sku_id, "order_id": placed["id"]}
        await _no_server_error(order.client, known)


async def test_gateway_in_front_of_the_order_service(db_url: str, gateway_db_url: str, bootstrap: str) -> None:
    """The gateway's own routes (staff sign-in and accounts included, over its identity database) and what it
    proxies; the other services are down, so their routes are absent from the gateway's document and not fuzzed
    through it. The order service's boundary cases are covered above: here only the random examples (paths and
    queries the gateway routes on)."""
    async with order_stack(db_url, bootstrap, new_pay_keys()) as order:
        await order.store("s-1")
        dead = f"http://127.0.0.1:{free_port()}"
        settings = GatewaySettings(
            order_url=str(order.client.base_url).rstrip("/"),
            dispatch_url=dead,
            redemption_url=dead,
            aftersales_url=dead,
            notify_url=dead,
            signing_key=generate_signing_key(),
            previous_public_keys=public_pem(JWT_KEY),  # type: ignore[arg-type]  # verifies the roles' tokens
            dev_mode=True,
            wechat_mode="sandbox",
            rate_limit_ip_burst=1_000_000,
            rate_limit_principal_burst=1_000_000,
            database_url=gateway_db_url,
        )
        async with serve(create_gateway(settings)) as url, httpx.AsyncClient(base_url=url) as gateway:
            await _no_server_error(gateway, {"store_id": "s-1"}, coverage=False)


async def test_dispatch_service(dispatch_db_url: str, bootstrap: str) -> None:
    async with dispatch_stack(dispatch_db_url, bootstrap) as dispatch:
        account = await dispatch.bind("dada")
        order_id = await dispatch.order_ready()
        delivery = await dispatch.delivery(order_id)
        known = {"delivery_id": delivery["id"], "account_id": account["id"], "carrier": list(WIRES)}
        await _no_server_error(dispatch.client, known)


async def test_redemption_service(redemption_db_url: str, bootstrap: str) -> None:
    async with redemption_stack(redemption_db_url, bootstrap) as redemption:
        await redemption.order_paid("o-1")
        voucher = await redemption.voucher(uses=5)
        redeemed = await redemption.redeem(code=voucher["code"], headers=MERCHANT)
        assert redeemed.status_code == 201, redeemed.text
        known = {"code_id": voucher["id"], "redemption_id": redeemed.json()["id"], "scope": "store", "key": "s-1"}
        await _no_server_error(redemption.client, known)


async def test_aftersales_service(aftersales_db_url: str, bootstrap: str) -> None:
    async with aftersales_stack(aftersales_db_url, bootstrap) as aftersales:
        await aftersales.order("o-1")
        case = (await aftersales.apply("o-1")).json()
        known = {"case_id": case["id"], "order_id": "o-1", "merchant_id": "m-1", "evidence_id": str(uuid.uuid4())}
        await _no_server_error(aftersales.client, known)


async def test_notify_service(db_url: str, bootstrap: str) -> None:
    common = {
        "database_url": db_url,
        "kafka_bootstrap_servers": bootstrap,
        "jwt_public_keys": public_pem(JWT_KEY),  # type: ignore[arg-type]
        "run_workers": False,
    }
    async with serve(create_notify(NotifySettings(**common))) as url, httpx.AsyncClient(base_url=url) as client:
        await _no_server_error(client, {})
