"""The customer's tracking page: opened from a signed link, it follows a carrier delivery (the demo store's carrier
simulator drives it) to `delivered` and resumes after a dropped connection without showing an entry twice; opened
with the customer's own token (the mini-program), its QR code renews itself when the token rotates."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.async_api import Page, Request, Route, expect

from deploy.local.demo import Walk
from deploy.local.seed import DEMO_STORE_ID
from tests.browser.conftest import Platform, screenshot

STREAM = "**/v1/notifications/streams/orders/**"


def _delivery_order(walk: Walk) -> dict[str, Any]:
    products = walk.call("customer", "GET", f"/v1/stores/{DEMO_STORE_ID}/products")["items"]
    sku = products[0]["skus"][0]["id"]
    return walk.place_and_pay("delivery", [{"sku_id": sku, "quantity": 1}])


def _tracking_link(walk: Walk, order_id: str) -> str:
    """The link the customer shares (or the SMS carries): the page's address with the link token in its fragment."""
    minted = walk.call("customer", "POST", "/v1/auth/tracking-links", json={"order_id": order_id})
    return str(minted["url"])


async def _stream_head(platform: Platform, link: str, order_id: str) -> tuple[str, str]:
    """The order stream's first entry, as the server sends it (raw text), and its id: read with a token the link
    is exchanged for, as the page does."""
    async with httpx.AsyncClient(base_url=platform.url, timeout=30) as client:
        exchanged = await client.post("/v1/auth/tracking/exchange", json={"link": link.partition("#link=")[2]})
        token = exchanged.json()["access_token"]
        path = f"/v1/notifications/streams/orders/{order_id}"
        text = ""
        for _ in range(120):  # until the notify service has heard of the order (404 until then)
            async with client.stream("GET", path, headers={"Authorization": f"Bearer {token}"}) as response:
                if response.status_code == 404:
                    await asyncio.sleep(0.5)
                    continue
                assert response.status_code == 200, await response.aread()
                async for line in response.aiter_lines():
                    text += line + "\n"
                    if line.startswith("id:"):
                        entry_id = line.partition(":")[2].strip()
                    elif line == "" and "\ndata:" in text:
                        return text, entry_id
    raise AssertionError("the stream never opened, or ended before its first entry")


async def test_the_page_follows_a_carrier_delivery_to_the_end_and_survives_a_dropped_connection(
    page: Page, platform: Platform
) -> None:
    walk = platform.walk()
    try:
        order = await asyncio.to_thread(_delivery_order, walk)
        oid = order["id"]
        url = await asyncio.to_thread(_tracking_link, walk, oid)
        head, head_id = await _stream_head(platform, url, oid)

        # The page's first stream connection carries the first entry, then drops (the body ends without `end`,
        # as a dropped connection does); later connections reach the real stream.
        connections: list[dict[str, str]] = []

        async def drop_the_first(route: Route, request: Request) -> None:
            connections.append(await request.all_headers())
            if len(connections) == 1:
                await route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=head)
            else:
                await route.continue_()

        await page.route(STREAM, drop_the_first)
        await page.goto(url)
        # The dropped stream said to wait its `retry` before reconnecting.
        await expect(page.locator("#timeline li[data-type=status][data-status=paid]")).to_have_count(1, timeout=20_000)
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        assert len(connections) == 2
        assert connections[1]["last-event-id"] == head_id  # resumed after what it had, not from the start
        assert "authorization" in connections[1]
        await expect(page.locator("#summary")).to_contain_text("地址和电话已隐藏")
        await expect(page.locator("#plot [data-point=store]")).to_have_count(1)
        await expect(page.locator("#plot [data-point=customer]")).to_have_count(1)

        await asyncio.to_thread(walk.call, "merchant", "POST", f"/v1/orders/{oid}/accept")
        await asyncio.to_thread(walk.call, "merchant", "POST", f"/v1/orders/{oid}/ready")
        delivered = page.locator("#timeline li[data-type=delivery][data-status=delivered]")
        await expect(delivered).to_have_count(1, timeout=60_000)
        await expect(page.locator("#delivery")).to_have_attribute("data-status", "delivered")
        await expect(page.locator("#order-status")).to_have_attribute("data-status", "delivered")

        # Every entry of the stream once, in its order.
        ids = await page.locator("#timeline li").evaluate_all("items => items.map(li => Number(li.dataset.entryId))")
        assert ids == sorted(set(ids))
        assert ids[0] == int(head_id)
        statuses = await page.locator("#timeline li[data-type=status]").evaluate_all(
            "items => items.map(li => li.dataset.status)"
        )
        assert statuses[:4] == ["pending_payment", "paid", "accepted", "ready"]
        deliveries = await asyncio.to_thread(walk.call, "customer", "GET", f"/v1/deliveries?order_id={oid}")
        located = deliveries["items"][0]["rider_lat"] is not None
        await expect(page.locator("#plot [data-point=rider]")).to_have_count(1 if located else 0)
        await page.set_viewport_size({"width": 430, "height": 1400})  # a phone's width (the mini-program, an SMS)
        await screenshot(page, "tracking")
    finally:
        walk.close()


async def test_the_qr_code_renews_itself_before_its_token_expires(page: Page, platform: Platform) -> None:
    """Opened as the mini-program's web-view opens it: with the customer's own token, which sees everything."""
    walk = platform.walk()
    try:
        order = await asyncio.to_thread(_delivery_order, walk)
        code = await asyncio.to_thread(walk.wait_code, order["id"], 60)
        await page.goto(f"/track/#access={walk.tokens['customer']}&order={order['id']}")
        await expect(page.locator("#order-status")).to_have_attribute("data-status", "paid")
        await expect(page.locator("#summary")).not_to_contain_text("地址和电话已隐藏")

        qr = page.locator("#qr")
        await expect(qr).to_have_count(1)
        await expect(page.locator("#code-digits")).to_have_text(code["code"])
        first = await qr.get_attribute("data-token")
        assert first is not None
        assert first.startswith("SDQ1.")
        # The token rotates every 30 s: the page fetches the new one by itself, just after the rotation.
        await expect(qr).not_to_have_attribute("data-token", first, timeout=45_000)
        renewed = await qr.get_attribute("data-token")
        current = await asyncio.to_thread(walk.call, "customer", "GET", f"/v1/codes?order_id={order['id']}")
        assert renewed == current["items"][0]["qr_token"]
        assert renewed.split(".")[1] == first.split(".")[1]  # the same code, a new token
    finally:
        walk.close()


async def test_a_forged_or_truncated_link_says_so(page: Page, platform: Platform) -> None:
    now = datetime.now(UTC)
    claims = {"sub": "openid-demo", "role": "customer", "order_id": "SD1", "iss": "songda", "aud": "songda:tracking",
              "iat": now, "exp": now + timedelta(hours=1)}  # fmt: skip
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "songda-1"})
    await page.goto(f"/track/#link={forged}")
    await expect(page.locator("#problem")).to_contain_text("This link has expired or is not valid")
    await expect(page.locator("#summary")).to_be_empty()

    await page.goto(f"/track/#link={forged[:20]}")
    await page.reload()  # a new fragment alone does not load the page again
    await expect(page.locator("#problem")).to_contain_text("incomplete")
