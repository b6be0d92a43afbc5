"""The settings screens, driven as the demo merchant's admin and checked through the public API: a SKU's price and
shelf from the catalogue, the store's prep time (and the API's refusal shown beside the field), a store-scoped staff
member invited (token handed over once, no staff tab for them) and disabled (their sign-in refused), a webhook added,
paused and removed, and a private URL refused by the SSRF check in the form."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from playwright.async_api import BrowserContext, Page, expect

from deploy.local.demo import Walk
from deploy.local.seed import DEMO_STORE_ID
from tests.browser.conftest import Platform, screenshot, sign_in
from tests.support import eventually


def notices_of(walk: Walk, order_id: str, within: float = 30) -> list[dict[str, Any]]:
    """The order's notices, once notify has heard of the order over Kafka (empty if it never does)."""
    deadline = time.monotonic() + within
    while not (found := walk.call("merchant", "GET", "/v1/notifications/notices", params={"order_id": order_id})):
        if time.monotonic() > deadline:
            break
        time.sleep(0.3)
    return list(found)


async def test_a_skus_price_and_shelf_change_from_the_catalogue(page: Page, platform: Platform, walk: Walk) -> None:
    name = f"测试拌面 {uuid.uuid4().hex[:6]}"
    product = walk.call(
        "merchant", "POST", f"/v1/stores/{DEMO_STORE_ID}/products",
        json={"name": name, "skus": [{"name": "中碗", "price_fen": 2500, "stock": 40}]},
    )  # fmt: skip
    sku_id = product["skus"][0]["id"]
    await sign_in(page, platform.admin_login, platform.admin_password)
    await page.goto("/console/#/catalogue")
    sku = page.locator(f'form.sku[data-sku="{sku_id}"]')
    await expect(sku).to_be_visible()
    await screenshot(page, "catalogue")

    await sku.locator("input[name=price]").fill("31.50")
    await sku.locator("input[name=stock]").fill("12")
    await sku.locator("button[type=submit]").click()
    await expect(sku.locator(".sku-name")).to_contain_text("v2")  # a new price is a new version
    changed = walk.call("merchant", "GET", f"/v1/products/{product['id']}")["skus"][0]
    assert (changed["price_fen"], changed["stock"], changed["on_shelf"]) == (3150, 12, True)

    await sku.locator("button.shelf").click()
    await expect(sku).to_have_attribute("data-on-shelf", "false")
    assert walk.call("merchant", "GET", f"/v1/products/{product['id']}")["skus"][0]["on_shelf"] is False

    await sku.locator("input[name=price]").fill("-1")
    await sku.locator("button[type=submit]").click()
    await expect(sku.locator('[data-field="price_fen"] .field-error')).not_to_be_empty()


async def test_the_store_prep_time_is_saved_and_a_refusal_shows_beside_it(
    page: Page, platform: Platform, walk: Walk
) -> None:
    before = walk.call("merchant", "GET", f"/v1/stores/{DEMO_STORE_ID}")
    wanted = before["prep_minutes"] % 50 + 7
    try:
        await sign_in(page, platform.admin_login, platform.admin_password)
        await page.goto("/console/#/store")
        form = page.locator("#store-settings")
        prep = form.locator("input[name=prep_minutes]")
        await expect(prep).to_have_value(str(before["prep_minutes"]))

        await prep.fill("9999")
        await form.locator("button[type=submit]").click()
        await expect(form.locator('[data-field="prep_minutes"] .field-error')).to_contain_text("600")
        assert walk.call("merchant", "GET", f"/v1/stores/{DEMO_STORE_ID}")["prep_minutes"] == before["prep_minutes"]

        await prep.fill(str(wanted))
        await form.locator("button[type=submit]").click()
        await expect(page.locator("#toasts")).to_contain_text("Store settings saved")
        after = walk.call("merchant", "GET", f"/v1/stores/{DEMO_STORE_ID}")
        assert after["prep_minutes"] == wanted
        # The rest of the form went back as it came: nothing else changed.
        unchanged = {k: v for k, v in after.items() if k not in ("prep_minutes", "updated_at")}
        assert unchanged == {k: v for k, v in before.items() if k not in ("prep_minutes", "updated_at")}

        # Opening hours: a period from Monday to Saturday, through midnight.
        await form.get_by_role("button", name="添加时段 Add a period").click()
        period = form.locator(".period").last
        await period.get_by_label("日 Sun").uncheck()
        await period.locator("input.open").fill("10:00")
        await period.locator("input.close").fill("01:30")
        await form.locator("button[type=submit]").click()
        # The new period is in the form before the save lands: the API is read until the save has.

        async def saved() -> bool:
            hours = walk.call("merchant", "GET", f"/v1/stores/{DEMO_STORE_ID}")["opening_hours"]
            return len(hours) == len(before["opening_hours"]) + 1

        await eventually(saved)
        hours = walk.call("merchant", "GET", f"/v1/stores/{DEMO_STORE_ID}")["opening_hours"]
        assert hours[-1] == {"weekdays": [1, 2, 3, 4, 5, 6], "open": "10:00", "close": "01:30"}
        await expect(form.locator(".period")).to_have_count(len(before["opening_hours"]) + 1)
    finally:
        walk.call(
            "merchant", "PATCH", f"/v1/stores/{DEMO_STORE_ID}",
            json={"prep_minutes": before["prep_minutes"], "opening_hours": before["opening_hours"]},
        )  # fmt: skip


async def test_a_store_scoped_member_is_invited_then_disabled(
    page: Page, context: BrowserContext, platform: Platform
) -> None:
    login = f"cook-{uuid.uuid4().hex[:8]}@demo-merchant"
    password = "noodles-all-day-42"
    await sign_in(page, platform.admin_login, platform.admin_password)
    await page.click('nav.tabs a[data-view="staff"]')
    invite = page.locator("#invite-staff")
    await invite.locator("input[name=login]").fill(login)
    await invite.locator("input[name=display_name]").fill("面点师 Cook")
    await invite.locator(f'input[name=store_ids][value="{DEMO_STORE_ID}"]').check()
    await invite.locator("button[type=submit]").click()
    token = page.locator(".handover code.token")
    await expect(token).not_to_be_empty()
    row = page.locator(f'tr.account[data-login="{login}"]')
    await expect(row).to_contain_text("待设密码 Invited")
    await expect(row.locator(f'input[value="{DEMO_STORE_ID}"]')).to_be_checked()

    async with httpx.AsyncClient(base_url=platform.url) as client:
        spent = await client.post("/v1/auth/password", json={"token": await token.inner_text(), "password": password})
        assert spent.status_code == 200, spent.text
        signed = await client.post("/v1/auth/sign-in", json={"login": login, "password": password})
        assert signed.status_code == 200, signed.text
        assert signed.json()["store_ids"] == [DEMO_STORE_ID]

        # The member's own console has no staff tab (the API refuses them the staff list).
        theirs = await context.new_page()
        await sign_in(theirs, login, password)
        await expect(theirs.locator('nav.tabs a[data-view="catalogue"]')).to_be_visible()
        await expect(theirs.locator('nav.tabs a[data-view="staff"]')).to_have_count(0)
        await theirs.close()

        await page.reload()
        await expect(row).to_contain_text("正常 Active")
        await screenshot(page, "staff")
        await row.locator("button.disable").click()
        await expect(row).to_have_attribute("data-disabled", "true")
        refused = await client.post("/v1/auth/sign-in", json={"login": login, "password": password})
        assert refused.status_code == 401
        assert "disabled" in refused.json()["detail"]


async def test_a_webhook_is_added_paused_and_removed_and_a_private_url_refused(page: Page, platform: Platform) -> None:
    await sign_in(page, platform.admin_login, platform.admin_password)
    await page.goto("/console/#/notifications/webhooks")
    form = page.locator("#new-webhook")
    await form.locator("input[name=url]").fill("http://127.0.0.1:8000/hook")
    await form.locator("button[type=submit]").click()
    await expect(form.locator(".form-error")).to_contain_text("not a public address")
    await expect(page.locator("article.webhook", has_text="127.0.0.1")).to_have_count(0)

    url = f"https://1.1.1.1/songda/{uuid.uuid4().hex[:8]}"  # public; never called: removed below
    await form.locator("input[name=url]").fill(url)
    await form.locator('input[name=event_types][value="order.paid"]').check()
    await form.locator("button[type=submit]").click()
    card = page.locator("article.webhook", has_text=url)
    await expect(card.locator("code.secret")).to_contain_text("whsec_")
    await expect(card).to_contain_text("order.paid")

    await card.locator("button.pause").click()
    await expect(card).to_have_attribute("data-enabled", "false")
    await card.locator("button.resume").click()
    await expect(card).to_have_attribute("data-enabled", "true")

    page.on("dialog", lambda dialog: dialog.accept())
    await card.locator("button.delete").click()
    await expect(card).to_have_count(0)


async def test_carrier_accounts_are_listed_bound_and_unbound(page: Page, platform: Platform, walk: Walk) -> None:
    await sign_in(page, platform.admin_login, platform.admin_password)
    await page.goto("/console/#/carriers")
    for carrier in ("dada", "sf"):  # the demo's, seeded
        await expect(page.locator(f'tr.account[data-carrier="{carrier}"]')).to_have_count(1)
    form = page.locator("#bind-carrier")
    await form.locator("select[name=carrier]").select_option("wechat_legacy")
    await form.locator("input[name=app_key]").fill("wx-app-key-1")
    await form.locator("input[name=app_secret]").fill("wx-secret")
    await form.locator("button[type=submit]").click()
    await expect(form.locator(".form-error")).to_contain_text("brand")  # WeChat needs the fleet behind it

    app_key = f"ss-{uuid.uuid4().hex[:10]}"
    await form.locator("select[name=carrier]").select_option("shansong")
    await form.locator("input[name=app_key]").fill(app_key)
    await form.locator("input[name=app_secret]").fill("ss-secret-for-the-test")
    await form.locator("button[type=submit]").click()
    row = page.locator('tr.account[data-carrier="shansong"]', has_text=app_key[:3])
    await expect(row).to_have_count(1)
    await expect(row).not_to_contain_text(app_key)  # masked
    bound = walk.call("merchant", "GET", f"/v1/carriers/accounts?store_id={DEMO_STORE_ID}")
    assert [a["carrier"] for a in bound].count("shansong") == 1

    page.on("dialog", lambda dialog: dialog.accept())
    await row.locator("button.danger").click()
    await expect(row).to_have_count(0)
    left = walk.call("merchant", "GET", f"/v1/carriers/accounts?store_id={DEMO_STORE_ID}")
    assert sorted(a["carrier"] for a in left) == ["dada", "sf"]


async def test_a_notice_template_is_saved_and_a_wrong_keyword_refused(
    page: Page, platform: Platform, walk: Walk
) -> None:
    merchant = {"merchant_id": "demo-merchant"}
    before = next(t for t in walk.call("ops", "GET", "/v1/notifications/templates", params=merchant)
                  if t["notice"] == "accepted")  # fmt: skip
    try:
        await sign_in(page, platform.admin_login, platform.admin_password)
        await page.goto("/console/#/notifications/templates")
        form = page.locator('form.template[data-notice="accepted"]')
        await expect(form.locator("input[name=template_id]")).to_have_value(before["template_id"])
        await form.locator("input[name=fields]").fill("character_string1=order_no, color9=status")
        await form.locator("button[type=submit]").click()
        await expect(form.locator('[data-field="fields"] .field-error')).to_contain_text("color9")

        await form.locator("input[name=fields]").fill("character_string1=order_no, phrase3=status")
        await form.locator("input[name=page]").fill("pages/order/detail")
        await form.locator("button[type=submit]").click()
        await expect(page.locator("#toasts")).to_contain_text("Saved")
        saved = next(t for t in walk.call("ops", "GET", "/v1/notifications/templates", params=merchant)
                     if t["notice"] == "accepted")  # fmt: skip
        assert saved["fields"] == {"character_string1": "order_no", "phrase3": "status"}
        assert saved["page"] == "pages/order/detail"
        assert saved["sms_fallback"] == before["sms_fallback"]
    finally:
        restore = {
            k: before[k] for k in ("template_id", "fields", "page", "sms_fallback", "sms_template_id", "sms_params")
        }
        walk.call("ops", "PUT", "/v1/notifications/templates/accepted", params=merchant, json=restore)


async def test_a_review_gets_the_merchants_reply(page: Page, platform: Platform, walk: Walk) -> None:
    product = walk.call(
        "merchant", "POST", f"/v1/stores/{DEMO_STORE_ID}/products",
        json={"name": f"评价套餐 {uuid.uuid4().hex[:6]}", "skus": [{"name": "套餐", "price_fen": 2600, "stock": 5}]},
    )  # fmt: skip
    order = walk.place_and_pay("pickup", [{"sku_id": product["skus"][0]["id"], "quantity": 1}])
    walk.call("merchant", "POST", f"/v1/orders/{order['id']}/accept")
    walk.call("merchant", "POST", f"/v1/orders/{order['id']}/ready")
    code = walk.wait_code(order["id"], within=60)
    walk.call(
        "merchant", "POST", "/v1/redemptions",
        json={"code": code["code"], "store_id": DEMO_STORE_ID, "request_no": uuid.uuid4().hex},
    )  # fmt: skip
    assert walk.wait_status(order["id"], {"completed"}, within=60)["status"] == "completed"
    text = f"面很劲道 {uuid.uuid4().hex[:6]}"
    walk.call("customer", "POST", f"/v1/orders/{order['id']}/review", json={"store_rating": 4, "text": text})

    await sign_in(page, platform.admin_login, platform.admin_password)
    await page.goto("/console/#/reviews")
    review = page.locator(f'article.review[data-order="{order["id"]}"]')
    await expect(review).to_contain_text(text)
    await expect(review.locator(".stars")).to_have_text("★★★★☆")
    await review.locator("textarea[name=reply]").fill("谢谢光临 Thank you!")
    await review.locator("button[type=submit]").click()
    await expect(review.locator(".reply")).to_contain_text("谢谢光临 Thank you!")
    reviews = walk.call("merchant", "GET", f"/v1/stores/{DEMO_STORE_ID}/reviews", params={"limit": 100})["items"]
    assert next(r for r in reviews if r["order_id"] == order["id"])["reply"] == "谢谢光临 Thank you!"

    # The notices the order's customer was sent, phone numbers masked.
    assert notices_of(walk, order["id"])
    await page.goto("/console/#/notifications/notices")
    filter_form = page.locator("form.filter")
    await filter_form.locator("input[name=order_id]").fill(order["id"])
    await filter_form.locator("button[type=submit]").click()
    await expect(page.locator("tr.notice").first).to_contain_text(order["id"])
    await expect(page.locator("table.notices")).not_to_contain_text("13800000000")
