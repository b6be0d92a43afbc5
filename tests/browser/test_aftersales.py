"""The after-sales queue in a real browser: cases customers opened on completed orders (one with a photo) are listed
the soonest deadline first, with their lines, reason, photo (fetched with the token, shown as a blob: URL) and
history; the merchant approves one and rejects the other with a reason from the console, and the API shows both."""

from __future__ import annotations

import asyncio
import re
import struct
import time
import uuid
import zlib
from contextlib import closing
from typing import Any

from playwright.async_api import Page, expect

from deploy.local.demo import Walk, auth
from deploy.local.seed import DEMO_STORE_ID
from tests.browser.conftest import Platform, screenshot, sign_in


def _png() -> bytes:
    """A 4 x 4 red PNG, as a phone's photo would be uploaded (the service sniffs the first bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xd0\x20\x20" * 4 for _ in range(4))
    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _completed_pickup(walk: Walk) -> tuple[str, str]:
    """A pickup order placed, paid, accepted and collected at the counter: (order id, its SKU)."""
    products = walk.call("customer", "GET", f"/v1/stores/{DEMO_STORE_ID}/products")["items"]
    sku = products[0]["skus"][0]["id"]
    order = walk.place_and_pay("pickup", [{"sku_id": sku, "quantity": 2}])
    walk.call("merchant", "POST", f"/v1/orders/{order['id']}/accept")
    code = walk.wait_code(order["id"], within=90)
    redeem = {"code": code["code"], "store_id": DEMO_STORE_ID, "request_no": uuid.uuid4().hex}
    walk.call("merchant", "POST", "/v1/redemptions", json=redeem)
    walk.wait_status(order["id"], {"completed"}, within=60)
    return order["id"], sku


def _apply(walk: Walk, order_id: str, sku: str, **body: Any) -> dict[str, Any]:
    """The customer's application, tried until the after-sales service has heard of the pickup (over Kafka)."""
    payload = {"order_id": order_id, "type": "refund_only", "lines": [{"sku_id": sku, "quantity": 1}]} | body
    key = {"Idempotency-Key": uuid.uuid4().hex}
    deadline = time.monotonic() + 60
    while True:
        response = walk.gateway.post("/v1/aftersales/cases", json=payload,
                                     headers={**key, **auth(walk.tokens["customer"])})  # fmt: skip
        if response.status_code in (200, 201) or time.monotonic() > deadline:
            assert response.status_code in (200, 201), response.text
            return dict(response.json())
        time.sleep(0.3)


def _cases(walk: Walk) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two cases on two completed orders: a late one first (its answer is due sooner), then a photo of a bad bowl."""
    late_order, sku = _completed_pickup(walk)
    photo_order, _ = _completed_pickup(walk)
    late = _apply(walk, late_order, sku, reason_code="late_delivery")
    photo = walk.gateway.post("/v1/aftersales/evidence", content=_png(), headers={
        **auth(walk.tokens["customer"]), "Content-Type": "image/png", "Idempotency-Key": uuid.uuid4().hex})  # fmt: skip
    assert photo.status_code == 201, photo.text
    bad = _apply(walk, photo_order, sku, reason_code="quality_issue", description="面是凉的",
                 evidence_ids=[photo.json()["id"]])  # fmt: skip
    return late, bad


async def test_the_merchant_sees_the_queue_by_deadline_approves_one_case_and_rejects_another(
    page: Page, platform: Platform
) -> None:
    with closing(platform.walk()) as walk:
        late, bad = await asyncio.to_thread(_cases, walk)

        await sign_in(page, platform.admin_login, platform.admin_password)
        await page.click("nav.tabs a[data-view=aftersales]")
        late_card = page.locator(f"article[data-case='{late['id']}']")
        bad_card = page.locator(f"article[data-case='{bad['id']}']")
        await expect(late_card).to_be_visible()
        await expect(bad_card).to_be_visible()
        order = await page.locator("article.aftersales-case").evaluate_all("cards => cards.map(c => c.dataset.case)")
        assert order.index(late["id"]) < order.index(bad["id"]), order  # the sooner deadline first

        await expect(bad_card.locator(".aftersales-countdown")).to_have_text(re.compile(r"^\d+ h \d\d$"))
        await expect(bad_card.locator(".aftersales-reason")).to_contain_text("商品质量问题")
        await expect(bad_card.locator(".aftersales-reason")).to_contain_text("面是凉的")
        await expect(bad_card.locator(".aftersales-lines li")).to_have_text([re.compile(r"^招牌牛肉面.* \u00d7 1$")])
        photo = bad_card.locator(".aftersales-evidence img")
        await expect(photo).to_have_attribute("src", re.compile(r"^blob:"))
        await expect(photo).to_have_js_property("naturalWidth", 4)  # the image itself, decoded
        await expect(bad_card.locator(".aftersales-actions button")).to_have_text(
            ["同意 Approve", "协商金额 Offer an amount", "拒绝 Reject"]
        )
        await bad_card.locator("summary").click()
        await expect(bad_card.locator(".aftersales-history li")).to_contain_text(["待处理 Requested"])
        await screenshot(page, "aftersales")

        await bad_card.locator("button[data-action=approve]").click()
        await expect(bad_card.locator(".aftersales-confirm")).to_contain_text(f"¥{bad['asked_fen'] / 100:.2f}")
        await bad_card.locator("form[data-form=approve] button[type=submit]").click()
        # Approved, the refund is on its way: the case waits on nobody's deadline and has no merchant action left.
        await expect(bad_card).not_to_have_attribute("data-state", "requested")
        await expect(bad_card.locator(".aftersales-actions button")).to_have_count(0)

        await late_card.locator("button[data-action=reject]").click()
        reject = late_card.locator("form[data-form=reject]")
        await reject.locator("select[name=reason_code]").select_option("delivered_as_ordered")
        await reject.locator("textarea[name=note]").fill("按时出餐, 顾客到店晚了")
        await reject.locator("button[type=submit]").click()
        await expect(late_card).to_have_attribute("data-state", "rejected")
        await expect(late_card.locator(".aftersales-facts")).to_contain_text("商品已按订单送达")
        await expect(late_card.locator(".aftersales-deadline-name")).to_contain_text("Customer may escalate")

        answer = await asyncio.to_thread(walk.call, "customer", "GET", f"/v1/aftersales/cases/{bad['id']}")
        assert answer["state"] in ("approved", "refunding", "refunded"), answer
        assert answer["agreed_fen"] == bad["asked_fen"]
        history = await asyncio.to_thread(walk.call, "merchant", "GET", f"/v1/aftersales/cases/{bad['id']}/history")
        assert [(c["action"], c["side"]) for c in history][:2] == [("apply", "customer"), ("approve", "merchant")]
        rejected = await asyncio.to_thread(walk.call, "customer", "GET", f"/v1/aftersales/cases/{late['id']}")
        assert (rejected["state"], rejected["reject_reason_code"]) == ("rejected", "delivered_as_ordered")
