"""The order board and the order view in a real browser, against the whole platform: a new order arrives live on the
board (with a sound once alerts are on) and is accepted or rejected from its card; a store-scoped staff account sees
none of another store's orders; the order view shows the delivery with the carrier simulator's rider on the plot."""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

import httpx
from playwright.async_api import Page, expect

from deploy.local.demo import CUSTOMER_LAT, CUSTOMER_LNG, Walk
from deploy.local.seed import DEMO_STORE_ID
from tests.browser.conftest import Platform, screenshot, sign_in

# The longest wait for what the platform does by itself (events through the broker, the carrier simulator): a
# loaded machine delays the consumers. Not a timing goal: a live board shows a new order within a second.
LIVE_MS = 60_000


async def _place_and_pay(walk: Walk) -> dict[str, Any]:
    """A paid delivery order at the demo store, placed as its customer (the Walk's calls block: run off the loop)."""

    def place() -> dict[str, Any]:
        products = walk.call("customer", "GET", f"/v1/stores/{DEMO_STORE_ID}/products")["items"]
        sku = next(s["id"] for p in products for s in p["skus"] if s["price_fen"] >= 2000)
        return walk.place_and_pay("delivery", [{"sku_id": sku, "quantity": 1}])

    order = await asyncio.to_thread(place)
    assert order["status"] == "paid"
    return order


async def _place_and_pay_noting(walk: Walk, note: str) -> dict[str, Any]:
    """As `_place_and_pay`, with the customer's note: `sim:<scenario>` tells the carrier simulator how to behave."""

    def place() -> dict[str, Any]:
        products = walk.call("customer", "GET", f"/v1/stores/{DEMO_STORE_ID}/products")["items"]
        sku = next(s["id"] for p in products for s in p["skus"] if s["price_fen"] >= 2000)
        body = {
            "store_id": DEMO_STORE_ID, "items": [{"sku_id": sku, "quantity": 1}], "fulfilment_mode": "delivery",
            "contact": {"name": "顾客 Customer", "phone": "13800000000"}, "note": note,
            "address": {"text": "东城区王府井大街 100 号", "lat": CUSTOMER_LAT, "lng": CUSTOMER_LNG},
        }  # fmt: skip
        order = walk.call(
            "customer", "POST", "/v1/orders", json=body, headers={"Idempotency-Key": secrets.token_hex(8)}
        )
        payment = walk.call("customer", "POST", f"/v1/orders/{order['id']}/payment")
        walk.sandbox.post("/sandbox/pay", json={"prepay_id": payment["prepay_id"]}).raise_for_status()
        return walk.wait_status(order["id"], {"paid"}, within=30)

    order = await asyncio.to_thread(place)
    assert order["status"] == "paid"
    return order


async def _merchant(walk: Walk, method: str, path: str, **kwargs: Any) -> Any:
    return await asyncio.to_thread(walk.call, "merchant", method, path, **kwargs)


async def _open_board(page: Page, platform: Platform) -> None:
    await sign_in(page, platform.admin_login, platform.admin_password)
    # Live, or refused while the store never had an order (the board then looks again every few seconds).
    await expect(page.locator(".board .live-state")).to_have_attribute("data-state", re.compile("^(live|refused)$"))


def _card(page: Page, column: str, order_id: str) -> Any:
    return page.locator(f".column[data-column={column}] article[data-order='{order_id}']")


async def test_a_new_order_arrives_live_with_a_sound_and_is_accepted_from_its_card(
    page: Page, platform: Platform, walk: Walk
) -> None:
    await _open_board(page, platform)
    board = page.locator(".board")
    await expect(board).to_have_attribute("data-alerts", "off")
    await page.click("#enable-alerts")
    await expect(board).to_have_attribute("data-alerts", "on")
    await expect(page.locator("#enable-alerts")).to_be_hidden()

    order = await _place_and_pay(walk)
    card = _card(page, "new", order["id"])
    await expect(card).to_be_visible(timeout=LIVE_MS)
    await expect(card).to_have_class(re.compile(r"\bfresh\b"))
    await expect(card.locator(".pickup-no")).to_have_text("#" + order["id"][-4:].upper())
    await expect(card.locator(".note")).to_contain_text(order["note"])
    await expect(card.locator(".deadline")).to_contain_text(r"接单 Accept in")
    await expect(card.locator(".deadline")).to_have_attribute("data-deadline", order["accept_by"])
    assert await page.evaluate("window.songdaAlertsPlayed") >= 1
    await screenshot(page, "board")

    await card.locator("button[data-action=accept]").click()
    await expect(_card(page, "preparing", order["id"])).to_be_visible()
    accepted = await _merchant(walk, "GET", f"/v1/orders/{order['id']}")
    assert accepted["status"] == "accepted"

    # The kitchen ticket: the printable sheet holds the order, and the browser's print dialog is asked for.
    await page.evaluate("() => { window.print = () => { window.printed = (window.printed || 0) + 1; }; }")
    await _card(page, "preparing", order["id"]).locator("button[data-action=print]").click()
    assert await page.evaluate("window.printed") == 1
    await expect(page.locator("#ticket.ticket .seq")).to_have_text("#" + order["id"][-4:].upper())


async def test_without_the_first_click_alerts_stay_off(page: Page, platform: Platform, walk: Walk) -> None:
    await _open_board(page, platform)
    await expect(page.locator(".board")).to_have_attribute("data-alerts", "off")
    await expect(page.locator("#enable-alerts")).to_be_visible()
    order = await _place_and_pay(walk)
    await expect(_card(page, "new", order["id"])).to_be_visible(timeout=LIVE_MS)
    assert await page.evaluate("window.songdaAlertsPlayed || 0") == 0


async def test_an_order_is_rejected_with_a_reason(page: Page, platform: Platform, walk: Walk) -> None:
    order = await _place_and_pay(walk)
    await _open_board(page, platform)
    card = _card(page, "new", order["id"])
    await card.locator("button[data-action=reject]").click()
    form = card.locator("form[data-form=reject]")
    await form.locator("input[name=reason]").fill("今天太忙 Too busy today")
    await form.locator("button[type=submit]").click()
    await expect(card).to_have_count(0)
    await expect(_card(page, "done", order["id"])).to_be_visible()
    rejected = await _merchant(walk, "GET", f"/v1/orders/{order['id']}")
    assert rejected["status"] in ("refunding", "refunded")
    assert rejected["cancel_reason"] == "今天太忙 Too busy today"


async def test_a_half_filled_reason_stays_while_its_order_changes(page: Page, platform: Platform, walk: Walk) -> None:
    """The card of an order that changes (its delivery cancelled, here) is built again: the cancel form staff had
    opened on it is opened again, with what they typed, since the order can still be cancelled."""
    order = await _place_and_pay_noting(walk, "sim:slow_accept")  # no rider for ten minutes: nothing else moves
    await _merchant(walk, "POST", f"/v1/orders/{order['id']}/accept")
    await _merchant(walk, "POST", f"/v1/orders/{order['id']}/ready")
    await _open_board(page, platform)
    card = page.locator(f"article[data-order='{order['id']}']")
    await expect(card.locator(".facts")).to_contain_text("配送 created", timeout=LIVE_MS)
    await card.locator("button[data-action=cancel]").click()
    await card.locator("form[data-form=cancel] input[name=reason]").fill("顾客改约 Customer rescheduled")
    delivery = (await _merchant(walk, "GET", f"/v1/deliveries?order_id={order['id']}"))["items"][0]
    await _merchant(walk, "POST", f"/v1/deliveries/{delivery['id']}/cancel", json={"reason": "换一家 another carrier"})
    await expect(card.locator(".facts")).to_contain_text("配送 cancelled", timeout=LIVE_MS)  # built again
    reason = card.locator("form[data-form=cancel] input[name=reason]")
    await expect(reason).to_have_value("顾客改约 Customer rescheduled")
    await expect(reason).to_be_focused()


async def test_store_scoped_staff_see_no_other_stores_orders(page: Page, platform: Platform, walk: Walk) -> None:
    order = await _place_and_pay(walk)
    suffix = secrets.token_hex(3)
    password = secrets.token_urlsafe(12)
    login = f"counter-{suffix}@demo-merchant"

    def make_scoped_account() -> str:
        with httpx.Client(base_url=platform.url, timeout=15) as client:
            signed = client.post(
                "/v1/auth/sign-in", json={"login": platform.admin_login, "password": platform.admin_password}
            )
            signed.raise_for_status()
            admin = {"Authorization": f"Bearer {signed.json()['access_token']}"}
            # Stores list by name: this one after the demo store, which the console opens first for the admin.
            store = {
                "id": f"second-{suffix}", "name": f"鼎泰面馆 Second {suffix}", "phone": "010-66668888",
                "address": "北京市西城区西单北大街 1 号", "lat": 39.9133, "lng": 116.3745,
            }  # fmt: skip
            client.post("/v1/stores", json=store, headers=admin).raise_for_status()
            invited = client.post(
                "/v1/staff",
                json={"login": login, "display_name": "收银 Counter", "role": "merchant", "store_ids": [store["id"]]},
                headers=admin,
            )
            invited.raise_for_status()
            client.post(
                "/v1/auth/password", json={"token": invited.json()["token"], "password": password}
            ).raise_for_status()
            return str(store["id"])

    second = await asyncio.to_thread(make_scoped_account)
    await sign_in(page, login, password)
    picker = page.locator("#store-picker option")
    await expect(picker).to_have_count(1)
    await expect(picker).to_have_attribute("value", second)
    await expect(page.locator(".columns .column")).to_have_count(5)
    await expect(page.locator(f"article[data-order='{order['id']}']")).to_have_count(0)

    await page.evaluate(f"location.hash = '#/orders/{order['id']}'")
    await expect(page.locator(".order-view .not-found")).to_be_visible()
    await expect(page.locator(".order-view .summary")).to_have_count(0)


async def test_the_order_view_shows_the_delivery_and_the_rider_on_the_plot(
    page: Page, platform: Platform, walk: Walk
) -> None:
    # SF's simulated callbacks carry the rider's position (Dada's only prompt a status query, and the view asks for
    # the position while the delivery is on, which the simulator's brisk pace may leave no time for).
    store = f"/v1/stores/{DEMO_STORE_ID}"
    usual = (await _merchant(walk, "GET", store))["dispatch_strategy"]
    await _merchant(walk, "PATCH", store, json={"dispatch_strategy": {"kind": "preferred", "carriers": ["sf"]}})
    try:
        order = await _place_and_pay(walk)
        await _merchant(walk, "POST", f"/v1/orders/{order['id']}/accept")
        await _merchant(walk, "POST", f"/v1/orders/{order['id']}/ready")
    finally:
        await _merchant(walk, "PATCH", store, json={"dispatch_strategy": usual})
    await sign_in(page, platform.admin_login, platform.admin_password)
    await page.evaluate(f"location.hash = '#/orders/{order['id']}'")

    view = page.locator(".order-view")
    await expect(view.locator(".pickup-no")).to_have_text("#" + order["id"][-4:].upper())
    await expect(view.locator(".note")).to_contain_text(order["note"])
    # The carrier simulator's rider takes it: the dot, the store and the customer on the plot.
    rider = view.locator("svg.plot [data-point=rider]")
    await expect(rider).to_have_count(1, timeout=LIVE_MS)
    await expect(view.locator("svg.plot [data-point=store]")).to_have_count(1)
    await expect(view.locator("svg.plot [data-point=customer]")).to_have_count(1)
    await expect(view.locator(".delivery-facts .carrier")).to_have_text("sf")
    await expect(view.locator(".delivery-facts .rider")).not_to_have_text("—")
    await expect(view.locator(".timeline li[data-status=accepted]")).to_have_count(1)
    await screenshot(page, "order")


async def test_the_tip_is_raised_the_delivery_cancelled_after_its_fee_and_dispatched_again(
    page: Page, platform: Platform, walk: Walk
) -> None:
    # The simulated carrier takes ten minutes to find a rider: the delivery waits, as a tip raise is for.
    order = await _place_and_pay_noting(walk, "sim:slow_accept")
    await _merchant(walk, "POST", f"/v1/orders/{order['id']}/accept")
    await _merchant(walk, "POST", f"/v1/orders/{order['id']}/ready")
    await sign_in(page, platform.admin_login, platform.admin_password)
    await page.evaluate(f"location.hash = '#/orders/{order['id']}'")
    view = page.locator(".order-view")
    facts = view.locator(".delivery-facts")
    await expect(facts).to_have_attribute("data-delivery", "created", timeout=LIVE_MS)

    await view.locator(".tip-form input[name=tip]").fill("3")
    await view.locator(".tip-form button[type=submit]").click()
    await expect(facts).to_contain_text("¥3.00")

    await view.locator("button[data-action=cancel-delivery]").click()
    await expect(view.locator(".confirm")).to_contain_text("Cancelling now costs ¥")
    await view.locator("button[data-action=confirm-cancel]").click()
    await expect(facts).to_have_attribute("data-delivery", "cancelled")
    first = (await _merchant(walk, "GET", f"/v1/deliveries?order_id={order['id']}"))["items"][0]
    assert (first["status"], first["tip_fen"]) == ("cancelled", 300)

    await view.locator("button[data-action=redispatch]").click(timeout=LIVE_MS)
    await expect(facts).to_have_attribute("data-delivery", "created")
    deliveries = await _merchant(walk, "GET", f"/v1/deliveries?order_id={order['id']}")
    assert deliveries["total"] == 2
    assert deliveries["items"][0]["id"] != first["id"]


async def test_a_delivery_the_carrier_cancelled_shows_among_the_exceptions(
    page: Page, platform: Platform, walk: Walk
) -> None:
    await _open_board(page, platform)
    # The simulated carrier assigns a rider, then cancels: the order waits for staff to dispatch it again.
    order = await _place_and_pay_noting(walk, "sim:carrier_cancel")
    await _merchant(walk, "POST", f"/v1/orders/{order['id']}/accept")
    await _merchant(walk, "POST", f"/v1/orders/{order['id']}/ready")
    card = _card(page, "exceptions", order["id"])
    await expect(card).to_be_visible(timeout=LIVE_MS)
    await expect(card.locator(".facts")).to_contain_text("cancelled")
    await card.locator("a.details").click()
    await expect(page.locator(".order-view button[data-action=redispatch]")).to_be_visible()
