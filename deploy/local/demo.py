"""`songda demo`: a scripted walk through the running stack, as a customer, the merchant's staff, an own rider and the
WeChat Pay sandbox, printing each step."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from deploy.local.demo_aftersales import partial_refund
from deploy.local.demo_notices import accept_prompt, print_notices
from deploy.local.sandboxes.wechat_api import NAME as WECHAT_API_SANDBOX
from deploy.local.sandboxes.wechatpay import NAME as WECHATPAY_SANDBOX
from deploy.local.seed import DEMO_LAT, DEMO_LNG, DEMO_STORE, DEMO_STORE_ID, auth, seed_demo_store
from deploy.local.tokens import demo_tokens

CUSTOMER_LAT, CUSTOMER_LNG = 39.9150, 116.4039  # about 900 m from the demo store


class DemoFailed(RuntimeError):
    pass


class Walk:
    def __init__(
        self, gateway: str, sandbox: str, tokens: dict[str, str], say: Callable[[str], None],
        wechat_api: str | None = None,
    ) -> None:  # fmt: skip
        self.gateway = httpx.Client(base_url=gateway, timeout=15)
        self.wechat_api = wechat_api
        self.orders: list[str] = []
        self.sandbox = httpx.Client(base_url=sandbox, timeout=15)
        self.tokens = tokens
        self.say = say
        self.step_no = 0

    def close(self) -> None:
        self.gateway.close()
        self.sandbox.close()

    def step(self, text: str) -> None:
        self.step_no += 1
        self.say(f"\n{self.step_no:>2}. {text}")

    def call(self, role: str, method: str, path: str, **kwargs: Any) -> Any:
        headers = {**auth(self.tokens[role]), **kwargs.pop("headers", {})}
        response = self.gateway.request(method, path, headers=headers, **kwargs)
        if response.status_code >= 400:
            raise DemoFailed(f"{method} {path} as {role} → {response.status_code}: {response.text}")
        self.say(f"    {role:>8} {method} {path} → {response.status_code}")
        return response.json() if response.content else None

    def wait_status(self, order_id: str, wanted: set[str], within: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            order = self.gateway.get(f"/v1/orders/{order_id}", headers=auth(self.tokens["customer"])).json()
            if order["status"] in wanted or time.monotonic() > deadline:
                return dict(order)
            time.sleep(0.2)

    def wait_code(self, order_id: str, within: float = 20) -> dict[str, Any]:
        """The order's code, once the redemption service has heard of the payment (finish code) or the acceptance
        (pickup code) over Kafka."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            page = self.gateway.get(f"/v1/codes?order_id={order_id}", headers=auth(self.tokens["customer"])).json()
            if page.get("items"):
                return dict(page["items"][0])
            time.sleep(0.3)
        raise DemoFailed(f"no code was issued for order {order_id}: is the redemption service consuming order.events?")

    def place_and_pay(self, mode: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "store_id": DEMO_STORE_ID,
            "items": items,
            "fulfilment_mode": mode,
            "contact": {"name": "演示顾客", "phone": "13800000000"},
            "note": "少辣",
        }
        if mode != "pickup":
            body["address"] = {"text": "东城区王府井大街 100 号", "lat": CUSTOMER_LAT, "lng": CUSTOMER_LNG}
        order = self.call("customer", "POST", "/v1/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        self.orders.append(order["id"])
        self.say(
            f"    order {order['id']}: items {order['items_fen'] / 100:.2f} + delivery "
            f"{order['delivery_fee_fen'] / 100:.2f} = ¥{order['total_fen'] / 100:.2f}, {order['status']}"
        )
        payment = self.call("customer", "POST", f"/v1/orders/{order['id']}/payment")
        self.say(f"    wx.requestPayment params: package={payment['pay_params']['package']}, signType=RSA")
        paid = self.sandbox.post("/sandbox/pay", json={"prepay_id": payment["prepay_id"]})
        paid.raise_for_status()
        self.say(f"    sandbox: the customer paid, transaction {paid.json()['transaction_id']}")
        order = self.wait_status(order["id"], {"paid", "accepted"})
        if order["status"] not in ("paid", "accepted"):
            raise DemoFailed(f"the payment notification did not arrive: order is {order['status']}")
        self.say(f"    signed notification received → {order['status']}")
        return order

    def follow_delivery(self, order_id: str) -> None:
        """Watches the carrier simulator's rider, callback by signed callback, until the order is delivered."""
        seen: list[str] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            page = self.gateway.get(f"/v1/deliveries?order_id={order_id}", headers=auth(self.tokens["merchant"]))
            items = page.json().get("items") or []
            if items and (not seen or seen[-1] != items[0]["status"]):
                delivery = items[0]
                seen.append(delivery["status"])
                rider = (delivery.get("rider") or {}).get("name", "")
                self.say(f"    {delivery['carrier'] or 'waiting':>8} {delivery['status']:<15} {rider}")
            if seen and seen[-1] in ("delivered", "cancelled", "failed", "returned", "pickup_failed"):
                break
            time.sleep(0.3)
        order = self.wait_status(order_id, {"delivered", "completed"}, within=10)
        self.say(f"    order is {order['status']}")

    def own_rider_delivers(self, sku_id: str) -> None:
        order = self.place_and_pay("delivery", [{"sku_id": sku_id, "quantity": 1}])
        self.call("merchant", "POST", f"/v1/orders/{order['id']}/accept")
        self.call("merchant", "POST", f"/v1/orders/{order['id']}/ready")
        deadline = time.monotonic() + 20
        task = None
        while task is None and time.monotonic() < deadline:
            tasks = self.gateway.get("/v1/riders/me/tasks", headers=auth(self.tokens["rider"])).json()
            task = next((t for t in tasks if t["order_id"] == order["id"]), None)
            time.sleep(0.3)
        if task is None:
            raise DemoFailed("the own rider was never offered the delivery: is dispatch consuming order.events?")
        self.say(f"    the rider is offered it ({task['distance_m']} m away, answer by {task['expires_at']})")
        path = f"/v1/riders/me/tasks/{task['delivery_id']}"
        for action in ("accept", "arrive", "pickup"):
            step = self.call("rider", "POST", f"{path}/{action}")
            self.say(f"    delivery is {step['status']}")
        code = self.wait_code(order["id"])
        self.say(f"    at the door the customer shows the finish code {code['code']}")
        attempt = {"code": code["code"], "request_no": uuid.uuid4().hex}  # a new number per attempt, kept for retries
        handed = self.call("rider", "POST", f"{path}/deliver", json=attempt)
        self.say(f"    handover verified by the redemption service → delivery {handed['status']}")
        done = self.wait_status(order["id"], {"completed"}, within=15)
        self.say(f"    order is {done['status']}")

    def run(self) -> None:
        self.step("A customer near Wangfujing looks for stores that deliver to them")
        nearby = self.call("customer", "GET", f"/v1/stores?lat={CUSTOMER_LAT}&lng={CUSTOMER_LNG}")
        for store in nearby["items"][:3]:
            self.say(
                f"    {store['name']}: {store['distance_m']} m, open={store['open_now']}, rating={store['rating']}"
            )
        products = self.call("customer", "GET", f"/v1/stores/{DEMO_STORE_ID}/products")["items"]
        skus = {f"{p['name']} {s['name']}": s["id"] for p in products for s in p["skus"]}
        self.say("    menu: " + ", ".join(skus))

        self.step("They order two bowls and an egg for delivery, and pay with WeChat Pay (sandbox)")
        accept_prompt(self, self.wechat_api, "demo-customer")
        order = self.place_and_pay(
            "delivery",
            [{"sku_id": skus["招牌牛肉面 大碗"], "quantity": 2}, {"sku_id": skus["卤蛋 一个"], "quantity": 1}],
        )
        self.step("The merchant accepts the order and marks it ready")
        self.call("merchant", "POST", f"/v1/orders/{order['id']}/accept")
        ready = self.call("merchant", "POST", f"/v1/orders/{order['id']}/ready")
        self.say(f"    order is {ready['status']}; dispatch quotes Dada and SF and places it with the cheapest")
        self.follow_delivery(order["id"])
        try:
            partial_refund(self, order["id"], skus["卤蛋 一个"])
        except TimeoutError as exc:
            raise DemoFailed(str(exc)) from exc

        self.step("The merchant's own rider comes online next to the store; the store switches to own fleet first")
        self.call("rider", "PUT", "/v1/riders/me", json={"name": "王师傅", "phone": "13700000000"})
        self.call("rider", "POST", "/v1/riders/me/online")
        self.call("rider", "POST", "/v1/riders/me/location", json={"lat": DEMO_LAT, "lng": DEMO_LNG})
        strategy = {"kind": "own_fleet_first", "carriers": ["own_fleet", "dada", "sf"]}
        self.call("merchant", "PATCH", f"/v1/stores/{DEMO_STORE_ID}", json={"dispatch_strategy": strategy})
        try:
            self.own_rider_delivers(skus["招牌牛肉面 小碗"])
        finally:
            self.call("merchant", "PATCH", f"/v1/stores/{DEMO_STORE_ID}",
                      json={"dispatch_strategy": DEMO_STORE["dispatch_strategy"]})  # fmt: skip

        self.step("Another order, for self-pickup at the counter, redeemed with its rotating QR code")
        pickup = self.place_and_pay("pickup", [{"sku_id": skus["招牌牛肉面 小碗"], "quantity": 1}])
        self.call("merchant", "POST", f"/v1/orders/{pickup['id']}/accept")
        ready = self.call("merchant", "POST", f"/v1/orders/{pickup['id']}/ready")
        self.say(f"    order is {ready['status']}")
        code = self.wait_code(pickup["id"])
        self.say(f"    the customer's pickup code: {code['code']} (QR token rotates in {code['qr_expires_in']} s)")
        redeemed = self.call(
            "merchant",
            "POST",
            "/v1/redemptions",
            json={
                "qr_token": code["qr_token"],
                "store_id": DEMO_STORE_ID,
                "request_no": uuid.uuid4().hex,
                "device_id": "demo-pos",
            },
        )
        self.say(f"    counter scan → {redeemed['status']} by {redeemed['redeemed_by']}")
        again = self.gateway.post(
            "/v1/redemptions",
            headers=auth(self.tokens["merchant"]),
            json={"code": code["code"], "store_id": DEMO_STORE_ID, "request_no": uuid.uuid4().hex},
        )
        self.say(f"    a second scan is refused: {again.json()['type']} ({again.json()['detail']})")
        done = self.wait_status(pickup["id"], {"completed"}, within=20)
        self.say(f"    order is {done['status']}")

        self.step("A third order is cancelled by the customer before the merchant accepts: refunded in full")
        refund_order = self.place_and_pay("delivery", [{"sku_id": skus["招牌牛肉面 大碗"], "quantity": 1}])
        cancelled = self.call("customer", "POST", f"/v1/orders/{refund_order['id']}/cancel", json={"reason": "点错了"})
        self.say(f"    order is {cancelled['status']}; the refund goes to WeChat Pay")
        final = self.wait_status(refund_order["id"], {"refunded"}, within=15)
        refunds = self.call("customer", "GET", f"/v1/orders/{refund_order['id']}/refunds")
        self.say(
            f"    order is {final['status']}: "
            + ", ".join(f"{r['amount_fen'] / 100:.2f} {r['status']}" for r in refunds)
        )

        self.step("The merchant's view")
        mine = self.call("merchant", "GET", f"/v1/orders?store_id={DEMO_STORE_ID}&limit=5")
        for item in mine["items"][:3]:
            self.say(
                f"    {item['id']} {item['fulfilment_mode']:>8} {item['status']:<17} ¥{item['total_fen'] / 100:.2f}"
            )
        print_notices(self, self.orders)
        self.say("\nDone. Explore the API at the gateway's /docs with the tokens `make run` printed.")


def run_demo(state_dir: Path, say: Callable[[str], None] = print) -> None:
    try:
        state = json.loads((state_dir / "run" / "stack.json").read_text())
    except FileNotFoundError as exc:
        raise DemoFailed("the stack is not running: start it with `make run` in another terminal") from exc
    urls = state.get("urls") or {}
    if "gateway" not in urls or WECHATPAY_SANDBOX not in urls:
        raise DemoFailed("the stack's state file has no URLs: restart it with `make run`")
    tokens = demo_tokens(state_dir, ttl_seconds=600)
    seed_demo_store(urls["gateway"], tokens["merchant"])
    walk = Walk(urls["gateway"], urls[WECHATPAY_SANDBOX], tokens, say, wechat_api=urls.get(WECHAT_API_SANDBOX))
    try:
        walk.run()
    finally:
        walk.close()
