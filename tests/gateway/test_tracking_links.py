"""Tracking links through the gateway and the real order service: who may sign one, the exchange for an access
token, expired, forged and other-audience links refused, and what the link's token may read (its order's paths,
redacted) and may not (anything else)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from deploy.local.ports import free_port
from gateway.app import create_app as create_gateway
from gateway.settings import GatewaySettings
from shared.keys import generate_signing_key
from tests.order.conftest import STORE_LAT, STORE_LNG, OrderHarness, new_pay_keys, order_stack
from tests.support import JWT_KEY, serve

SIGNING_PEM = JWT_KEY.private_bytes(  # the order service under test trusts this key
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


@dataclass
class Stack:
    order: OrderHarness
    gateway: httpx.AsyncClient

    async def token(self, role: str, sub: str, merchant_id: str | None = None) -> dict[str, str]:
        minted = await self.gateway.post(
            "/v1/auth/dev-token", json={"role": role, "sub": sub, "merchant_id": merchant_id}
        )
        assert minted.status_code == 200, minted.text
        return {"Authorization": f"Bearer {minted.json()['access_token']}"}

    async def link(self, order_id: str, headers: dict[str, str]) -> httpx.Response:
        return await self.gateway.post("/v1/auth/tracking-links", json={"order_id": order_id}, headers=headers)

    async def exchange(self, link: str) -> httpx.Response:
        return await self.gateway.post("/v1/auth/tracking/exchange", json={"link": link})

    async def tracking_token(self, order_id: str, headers: dict[str, str]) -> dict[str, str]:
        minted = await self.link(order_id, headers)
        assert minted.status_code == 201, minted.text
        exchanged = await self.exchange(minted.json()["url"].partition("#link=")[2])
        assert exchanged.status_code == 200, exchanged.text
        return {"Authorization": f"Bearer {exchanged.json()['access_token']}"}


@pytest.fixture
async def stack(db_url: str, bootstrap: str) -> AsyncIterator[Stack]:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: a request that passes the gateway gets 503
    async with order_stack(db_url, bootstrap, new_pay_keys()) as order:
        settings = GatewaySettings(
            order_url=str(order.client.base_url),
            dispatch_url=dead,
            redemption_url=dead,
            aftersales_url=dead,
            notify_url=dead,
            signing_key=SIGNING_PEM,
            dev_mode=True,
            wechat_mode="sandbox",
            public_url="https://track.example.com",
        )
        async with serve(create_gateway(settings)) as url, httpx.AsyncClient(base_url=url, timeout=30) as gateway:
            yield Stack(order, gateway)


async def _placed_order(stack: Stack, customer: dict[str, str]) -> dict[str, Any]:
    sku = (await stack.order.product())["skus"][0]["id"]
    return await stack.order.place(sku, headers=customer, note="ring twice, 13800000000")


async def test_the_customer_signs_a_link_and_its_token_reads_the_order_redacted(stack: Stack) -> None:
    await stack.order.store()
    alice = await stack.token("customer", "openid-alice")
    order = await _placed_order(stack, alice)

    minted = await stack.link(order["id"], alice)
    assert minted.status_code == 201, minted.text
    body = minted.json()
    assert body["url"].startswith("https://track.example.com/track/#link=")
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert timedelta(hours=71) < expires_at - datetime.now(UTC) <= timedelta(hours=72)
    link = body["url"].partition("#link=")[2]
    claims = jwt.decode(link, options={"verify_signature": False})
    assert claims["aud"] == "songda:tracking"
    assert (claims["sub"], claims["order_id"], claims["merchant_id"]) == ("openid-alice", order["id"], "m-1")

    exchanged = await stack.exchange(link)
    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.json()["role"] == "customer"
    assert exchanged.json()["expires_in"] == 15 * 60
    tracking = {"Authorization": f"Bearer {exchanged.json()['access_token']}"}

    seen = await stack.gateway.get(f"/v1/orders/{order['id']}", headers=tracking)
    assert seen.status_code == 200, seen.text
    read = seen.json()
    assert read["redacted"] is True
    assert read["contact"] == {"name": None, "phone": None}
    assert read["note"] == ""
    assert read["address"] == {"text": None, "lat": round(STORE_LAT + 0.01, 3), "lng": round(STORE_LNG, 3)}
    assert read["items"] == order["items"]  # the rest is the order as its customer sees it
    history = await stack.gateway.get(f"/v1/orders/{order['id']}/history", headers=tracking)
    assert history.status_code == 200, history.text
    assert [change["actor"] for change in history.json()] == ["customer"]

    # The customer's own token still sees everything.
    own = (await stack.gateway.get(f"/v1/orders/{order['id']}", headers=alice)).json()
    assert own["redacted"] is False
    assert own["contact"] == {"name": "Alice", "phone": "13800000000"}
    assert own["address"]["text"] == "建国路 88 号"


async def test_only_the_orders_customer_signs_a_link(stack: Stack) -> None:
    await stack.order.store()
    alice = await stack.token("customer", "openid-alice")
    order = await _placed_order(stack, alice)

    bob = await stack.token("customer", "openid-bob")
    assert (await stack.link(order["id"], bob)).status_code == 404
    rider = await stack.token("rider", "rider-1", "m-1")
    assert (await stack.link(order["id"], rider)).status_code == 403
    assert (await stack.link("SD000000unknown", alice)).status_code == 404
    assert (await stack.link("../stores", alice)).status_code == 422
    assert (await stack.gateway.post("/v1/auth/tracking-links", json={"order_id": order["id"]})).status_code == 401

    # Not even staff who can read the order: the link would show them the customer's codes (digits and QR).
    staff = await stack.token("merchant", "owner", "m-1")
    assert (await stack.gateway.get(f"/v1/orders/{order['id']}", headers=staff)).status_code == 200
    for caller in (staff, await stack.token("ops", "ops-1")):
        refused = await stack.link(order["id"], caller)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"

    # A link's token cannot sign a new link (which would outlive its own).
    tracking = await stack.tracking_token(order["id"], alice)
    refused = await stack.link(order["id"], tracking)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"


def _link(key: Any, **overrides: Any) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": "openid-alice",
        "role": "customer",
        "order_id": "SD1",
        "merchant_id": "m-1",
        "iss": "songda",
        "aud": "songda:tracking",
        "iat": now,
        "exp": now + timedelta(hours=1),
        **overrides,
    }
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "songda-1"})


async def test_expired_forged_and_other_audience_links_are_refused(stack: Stack) -> None:
    assert (await stack.exchange(_link(JWT_KEY))).status_code == 200  # the reference: a well-made link passes

    past = datetime.now(UTC) - timedelta(hours=2)
    expired = await stack.exchange(_link(JWT_KEY, iat=past, exp=past + timedelta(hours=1)))
    assert expired.status_code == 401
    assert expired.headers["content-type"] == "application/problem+json"
    assert "expired" in expired.json()["detail"]

    other_key = serialization.load_pem_private_key(generate_signing_key().encode(), password=None)
    assert (await stack.exchange(_link(other_key))).status_code == 401
    assert (await stack.exchange(_link(JWT_KEY, aud="songda"))).status_code == 401  # an access token is no link
    assert (await stack.exchange(_link(JWT_KEY, order_id=None))).status_code == 401  # a link names its order
    assert (await stack.exchange(_link(JWT_KEY, role="merchant"))).status_code == 401
    assert (await stack.exchange("not-a-token")).status_code == 401

    # A link is not an access token anywhere.
    link = {"Authorization": f"Bearer {_link(JWT_KEY)}"}
    assert (await stack.gateway.get("/v1/orders/SD1", headers=link)).status_code == 401


async def test_a_link_token_reads_its_order_only_and_nothing_else(stack: Stack) -> None:
    await stack.order.store()
    alice = await stack.token("customer", "openid-alice")
    order = await _placed_order(stack, alice)
    other = await _placed_order(stack, alice)  # the same customer's other order
    tracking = await stack.tracking_token(order["id"], alice)
    oid = order["id"]

    refused = [
        ("GET", f"/v1/orders/{other['id']}"),
        ("GET", f"/v1/orders/{other['id']}/history"),
        ("GET", "/v1/orders"),
        ("GET", f"/v1/orders?order_id={oid}"),
        ("GET", f"/v1/orders/{oid}?extra=1"),
        ("GET", f"/v1/orders/{oid}/refunds"),
        ("POST", f"/v1/orders/{oid}/cancel"),
        ("POST", f"/v1/orders/{oid}/payment"),
        ("DELETE", f"/v1/orders/{oid}"),
        ("GET", "/v1/deliveries"),
        ("GET", f"/v1/deliveries?order_id={other['id']}"),
        ("GET", f"/v1/deliveries?order_id={oid}&order_id={other['id']}"),
        ("GET", f"/v1/deliveries?order_id={oid}&status=delivered"),
        ("GET", "/v1/codes"),
        ("GET", f"/v1/codes?order_id={other['id']}"),
        ("POST", f"/v1/codes?order_id={oid}"),
        ("GET", f"/v1/notifications/streams/orders/{other['id']}"),
        ("GET", "/v1/notifications/streams/stores/s-1"),
        ("GET", "/v1/notifications"),
        ("GET", "/v1/aftersales"),
        ("POST", "/v1/aftersales"),
        ("GET", "/v1/subscriptions"),
        ("POST", "/v1/stores/s-1/products"),
        ("GET", "/v1/stores/s-1/products"),
    ]
    for method, path in refused:
        answer = await stack.gateway.request(method, path, headers=tracking)
        assert answer.status_code == 403, (method, path, answer.status_code)
        assert answer.headers["content-type"] == "application/problem+json"

    assert (await stack.gateway.get(f"/v1/orders/{oid}", headers=tracking)).status_code == 200
    assert (await stack.gateway.head(f"/v1/orders/{oid}", headers=tracking)).status_code != 403
    assert (await stack.gateway.get("/v1/stores/s-1", headers=tracking)).status_code == 200
    # These pass the gateway to services that are down in this test (503): the gateway let them through.
    allowed = [
        f"/v1/deliveries?order_id={oid}",
        f"/v1/codes?order_id={oid}&limit=5",
        f"/v1/notifications/streams/orders/{oid}",
        f"/v1/notifications/streams/orders/{oid}?after=3",
    ]
    for path in allowed:
        assert (await stack.gateway.get(path, headers=tracking)).status_code == 503, path

    # The customer's own token is not limited.
    assert (await stack.gateway.get(f"/v1/orders/{other['id']}", headers=alice)).status_code == 200


async def test_the_order_service_itself_limits_a_link_token_to_reading_its_order(stack: Stack) -> None:
    await stack.order.store()
    alice = await stack.token("customer", "openid-alice")
    order = await _placed_order(stack, alice)
    other = await _placed_order(stack, alice)
    tracking = await stack.tracking_token(order["id"], alice)
    service = stack.order.client  # past the gateway, as a request that got around it would be

    assert (await service.get(f"/v1/orders/{order['id']}", headers=tracking)).json()["redacted"] is True
    assert (await service.get(f"/v1/orders/{other['id']}", headers=tracking)).status_code == 404
    listed = (await service.get("/v1/orders", headers=tracking)).json()
    assert [o["id"] for o in listed["items"]] == [order["id"]]
    assert listed["items"][0]["contact"] == {"name": None, "phone": None}
    cancel = await service.post(f"/v1/orders/{order['id']}/cancel", headers=tracking)
    assert cancel.status_code == 403
    assert (await stack.order.order(order["id"]))["status"] == "pending_payment"


async def test_a_link_is_not_signed_while_the_order_service_is_down() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = GatewaySettings(
        **{f"{service}_url": dead for service in ("order", "dispatch", "redemption", "aftersales", "notify")},
        signing_key=SIGNING_PEM,
        dev_mode=True,
        wechat_mode="sandbox",
    )
    async with serve(create_gateway(settings)) as url, httpx.AsyncClient(base_url=url) as gateway:
        stack = Stack(order=None, gateway=gateway)  # type: ignore[arg-type]  # no order service: that is the point
        refused = await stack.link("SD1", await stack.token("customer", "openid-alice"))
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
