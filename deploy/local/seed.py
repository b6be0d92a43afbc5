"""The demo merchant `songda run` seeds: its store, menu and carrier accounts (bound from the carrier simulator's
console), and its admin's staff account, each created only when missing so a restart keeps what the merchant
changed."""

from __future__ import annotations

import httpx

DEMO_MERCHANT_ID = "demo-merchant"
DEMO_ADMIN_LOGIN = "admin@demo-merchant"
DEMO_STORE_ID = "demo-store"
DEMO_LAT, DEMO_LNG = 39.9087, 116.3975  # GCJ-02, central Beijing

DEMO_STORE = {
    "id": DEMO_STORE_ID,
    "name": "送达面馆 (demo)",
    "phone": "010-88886666",
    "address": "北京市东城区东长安街 1 号",
    "lat": DEMO_LAT,
    "lng": DEMO_LNG,
    "timezone": "Asia/Shanghai",
    "opening_hours": [],  # always open, so the demo works at any hour
    "range_radius_m": 5000,
    "min_order_fen": 2000,
    "delivery_base_fen": 500,
    "delivery_tiers": [{"above_m": 3000, "add_fen": 200}],
    "free_delivery_above_fen": 6000,
    "prep_minutes": 10,
    "fulfilment_modes": ["delivery", "pickup", "express"],
    "dispatch_trigger": "on_ready",
    "dispatch_strategy": {"kind": "cheapest", "carriers": ["dada", "sf"]},
    "auto_accept": False,
    "accept_limit_minutes": 10,
}
DEMO_PRODUCTS = [
    {
        "name": "招牌牛肉面",
        "description": "清汤, 手工拉面",
        "skus": [{"name": "大碗", "price_fen": 2800, "stock": 500}, {"name": "小碗", "price_fen": 2200, "stock": 500}],
    },
    {"name": "卤蛋", "skus": [{"name": "一个", "price_fen": 300, "stock": 1000}]},
]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seed_demo_store(gateway_url: str, merchant_token: str) -> bool:
    """Creates the demo store and its catalogue unless the store exists; returns whether it created them."""
    with httpx.Client(base_url=gateway_url, headers=auth(merchant_token), timeout=10) as client:
        if client.get(f"/v1/stores/{DEMO_STORE_ID}").status_code == 200:
            return False
        client.post("/v1/stores", json=DEMO_STORE).raise_for_status()
        for product in DEMO_PRODUCTS:
            client.post(f"/v1/stores/{DEMO_STORE_ID}/products", json=product).raise_for_status()
    return True


# The demo merchant's notices: one subscribe-message template each (ids as its WeChat console would list them), and
# an SMS stand-in, when the customer left no grant, for those a customer must not miss.
DEMO_NOTICES = ("paid", "accepted", "rejected", "ready_for_pickup", "refunded", "rider_accepted", "delivering",
                "delivered", "delivery_problem", "aftersales_decision")  # fmt: skip
DEMO_SMS_NOTICES = ("rider_accepted", "delivering", "delivered", "delivery_problem", "ready_for_pickup")
DEMO_NOTICE_FIELDS = {"character_string1": "order_no", "thing2": "store_name", "phrase3": "status", "time4": "time",
                      "thing5": "remark"}  # fmt: skip


def demo_template_id(notice: str) -> str:
    return f"demo-tmpl-{notice.replace('_', '-')}"


def seed_demo_notices(gateway_url: str, ops_token: str) -> None:
    """Sets the demo merchant's notice templates unless it has some (as ops: the demo's staff token is scoped to its
    store, and templates are the merchant's)."""
    merchant = {"merchant_id": DEMO_MERCHANT_ID}
    with httpx.Client(base_url=gateway_url, headers=auth(ops_token), timeout=10) as client:
        existing = client.get("/v1/notifications/templates", params=merchant)
        existing.raise_for_status()
        if existing.json():
            return
        for notice in DEMO_NOTICES:
            body = {"template_id": demo_template_id(notice), "fields": DEMO_NOTICE_FIELDS,
                    "sms_fallback": notice in DEMO_SMS_NOTICES, "sms_template_id": "2000001",
                    "sms_params": ["status", "order_no"]}  # fmt: skip
            client.put(f"/v1/notifications/templates/{notice}", json=body, params=merchant).raise_for_status()


DEMO_CARRIERS = ("dada", "sf")


def seed_demo_carriers(gateway_url: str, simulator_url: str, merchant_token: str) -> None:
    """Binds the demo store's carrier accounts, issued by the carrier simulator's console, unless bound."""
    with httpx.Client(base_url=gateway_url, headers=auth(merchant_token), timeout=10) as client:
        bound = {a["carrier"] for a in client.get(f"/v1/carriers/accounts?store_id={DEMO_STORE_ID}").json()}
        for carrier in DEMO_CARRIERS:
            if carrier in bound:
                continue
            account = httpx.post(f"{simulator_url}/_sim/accounts", json={"carrier": carrier}, timeout=10).json()
            body = {"store_id": DEMO_STORE_ID, "carrier": carrier, **{key: account[key] for key in
                    ("app_key", "app_secret", "shop_id", "merchant_no", "token")}}  # fmt: skip
            client.post("/v1/carriers/accounts", json=body).raise_for_status()


def seed_demo_admin(gateway_url: str, ops_token: str, password: str) -> None:
    """Invites the demo merchant's admin (as ops) and sets its password, unless it has one; an account left without
    one (a start stopped halfway) gets a reset."""
    with httpx.Client(base_url=gateway_url, headers=auth(ops_token), timeout=30) as client:
        staff = client.get("/v1/staff", params={"merchant_id": DEMO_MERCHANT_ID})
        staff.raise_for_status()
        admin = next((account for account in staff.json() if account["login"] == DEMO_ADMIN_LOGIN), None)
        if admin is not None and admin["has_password"]:
            return
        if admin is None:
            body = {"login": DEMO_ADMIN_LOGIN, "display_name": "Demo admin", "role": "merchant",
                    "merchant_id": DEMO_MERCHANT_ID, "admin": True}  # fmt: skip
            invitation = client.post("/v1/staff", json=body)
        else:
            invitation = client.post(f"/v1/staff/{admin['id']}/password-reset")
        invitation.raise_for_status()
        token = invitation.json()["token"]
        client.post("/v1/auth/password", json={"token": token, "password": password}).raise_for_status()
