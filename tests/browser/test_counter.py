"""The counter (核销) in a real browser: a pickup order's code typed in and redeemed, the same code again refused as
already used (when, where, by whom), a made-up code not found, another store's code refused as the wrong store, a
frozen code refused as frozen, and a voucher's QR text typed at scanner speed redeemed with its uses left."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.async_api import Page, expect

from deploy.local.demo import Walk
from deploy.local.seed import DEMO_MERCHANT_ID, DEMO_STORE, DEMO_STORE_ID
from services.redemption.codes import new_code
from tests.browser.conftest import Platform, screenshot, sign_in


def _subject(token: str) -> str:
    """The customer's id as their token names it (the walk's dev token; read, not verified)."""
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])


def _accepted_pickup_code(walk: Walk) -> dict[str, Any]:
    products = walk.call("customer", "GET", f"/v1/stores/{DEMO_STORE_ID}/products")["items"]
    sku = products[0]["skus"][0]["id"]
    order = walk.place_and_pay("pickup", [{"sku_id": sku, "quantity": 1}])
    walk.call("merchant", "POST", f"/v1/orders/{order['id']}/accept")
    return walk.wait_code(order["id"], within=90)  # generous: a busy machine, the consumers of a fresh platform


def _voucher(walk: Walk, store_id: str, uses: int) -> dict[str, Any]:
    """A voucher of the demo merchant issued by ops to the walk's customer, as the customer sees it (digits, QR)."""
    issued = walk.call("ops", "POST", "/v1/codes/vouchers", json={
        "merchant_id": DEMO_MERCHANT_ID, "store_id": store_id, "customer_id": _subject(walk.tokens["customer"]),
        "title": "洗车 次卡", "uses": uses,
        "valid_until": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
    })  # fmt: skip
    return dict(walk.call("customer", "GET", f"/v1/codes/{issued['id']}"))


def _second_store(walk: Walk) -> str:
    """Another store of the demo merchant (named to list after the demo store in the console's picker)."""
    store_id = f"counter-{uuid.uuid4().hex[:8]}"
    body = DEMO_STORE | {"id": store_id, "name": f"送达面馆 二店 {store_id}", "merchant_id": DEMO_MERCHANT_ID}
    walk.call("ops", "POST", "/v1/stores", json=body)
    return store_id


async def _scan(page: Page, text: str, *, delay: float = 0) -> None:
    field = page.locator("#counter-input")
    await expect(field).to_be_focused()  # the next scan needs no click
    await field.press_sequentially(text, delay=delay)
    await field.press("Enter")


async def test_codes_are_redeemed_at_the_counter_and_refusals_say_why(page: Page, platform: Platform) -> None:
    with closing(platform.walk()) as walk:
        code = await asyncio.to_thread(_accepted_pickup_code, walk)
        other_store = await asyncio.to_thread(_second_store, walk)
        elsewhere = await asyncio.to_thread(_voucher, walk, other_store, 1)
        stolen = await asyncio.to_thread(_voucher, walk, DEMO_STORE_ID, 1)
        await asyncio.to_thread(
            walk.call, "customer", "POST", f"/v1/codes/{stolen['id']}/freeze", json={"reason": "丢了"}
        )

    await sign_in(page, platform.admin_login, platform.admin_password)
    await page.click("nav.tabs a[data-view=counter]")
    answer = page.locator("#counter-answer")

    await _scan(page, code["code"], delay=30)  # typed by hand, grouped as the customer reads it out
    await expect(answer).to_have_attribute("data-outcome", "redeemed")
    await expect(answer.locator(".counter-headline")).to_have_text("已核销 Redeemed")
    await expect(answer).to_contain_text(code["order_id"])
    await expect(answer).to_contain_text("0 use(s) left")

    await _scan(page, code["code"])
    await expect(answer).to_have_attribute("data-code", "already-redeemed")
    await expect(answer.locator(".counter-headline")).to_have_text("已使用 Already used")
    await expect(answer).to_contain_text("When:")
    await expect(answer).to_contain_text(f"Where: {DEMO_STORE['name']} ({DEMO_STORE_ID})")
    await expect(answer).to_contain_text("By: 本账号 you")

    await _scan(page, new_code())
    await expect(answer).to_have_attribute("data-code", "code-not-found")
    await expect(answer.locator(".counter-headline")).to_have_text("无此券码 Not found")

    await _scan(page, elsewhere["code"])
    await expect(answer).to_have_attribute("data-code", "wrong-store")
    await expect(answer.locator(".counter-headline")).to_have_text("非本店券码 Wrong store")
    await expect(answer).to_contain_text(other_store)

    await _scan(page, stolen["code"])
    await expect(answer).to_have_attribute("data-code", "code-frozen")
    await expect(answer.locator(".counter-headline")).to_have_text("已冻结 Frozen")

    history = page.locator("#counter-history li")
    await expect(history).to_have_count(5)
    await expect(history.first).to_have_attribute("data-code", "code-frozen")
    await expect(history.last).to_have_attribute("data-code", "redeemed")
    await expect(page.locator("#counter-history")).not_to_contain_text(code["code"])  # only the last digits


async def test_a_scanner_types_a_vouchers_qr_text_and_enter(page: Page, platform: Platform) -> None:
    await sign_in(page, platform.admin_login, platform.admin_password)
    await page.goto("/console/#/counter")
    await expect(page.locator("#counter-input")).to_be_focused()
    with closing(platform.walk()) as walk:  # the QR is read just before the scan: its token rotates every 30 s
        voucher = await asyncio.to_thread(_voucher, walk, DEMO_STORE_ID, 3)

    await _scan(page, voucher["qr_token"])  # a scanner types as fast as keys go, then Enter
    answer = page.locator("#counter-answer")
    await expect(answer).to_have_attribute("data-outcome", "redeemed")
    await expect(answer).to_contain_text("洗车 次卡")
    await expect(answer).to_contain_text("2 use(s) left")
    await expect(page.locator("#counter-input")).to_be_focused()
    await expect(page.locator("#counter-input")).to_have_value("")
    await screenshot(page, "counter")
