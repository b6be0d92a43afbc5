"""The steady load: orders walked through whole lifecycles (delivered by the carrier simulator with its signed
callbacks, or rejected, or cancelled and refunded), after-sales cases opened on a share of the completed orders and
decided by the merchant or ops, and vouchers redeemed, all through the gateway, while faults hit.

Every step is retried the way a real client retries: the same Idempotency-Key for placing, the same request_no for
a redemption and for opening a case, and a command re-sent only when the order (or case) still has not moved a
while later. Errors are expected while a process is down; they are counted by kind, never fatal. Orders are watched
on the order database, cases on the after-sales one, each by one poller (not by polling the API, which would add
load of its own).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from deploy.chaos.stack import CUSTOMER_LAT, CUSTOMER_LNG, DEMO_STORE_ID, WECHATPAY_SANDBOX, Bench

FINAL = frozenset({"completed", "cancelled", "refunded"})
# What each order does once paid, by its number: most are delivered, the rest refunded three different ways.
PLANS = ("deliver",) * 7 + ("reject", "customer_cancel", "merchant_cancel")
RESEND_AFTER = 20.0  # seconds an order may sit in one status before its command is sent again
# On a slow machine the orders are placed late (every slot busy): they may still be placed this long after the window.
PLACE_GRACE = 120.0
ORDER_GIVE_UP = 300.0  # seconds after which the load stops driving an order (the drain and invariants judge it)
# What the customer of a completed order asks after-sales for, and how the merchant (or ops) decides, by the case's
# number: five end refunded (the whole order, part of a line, an amount the merchant proposed, a returned unit, a
# share ops rule after the merchant rejected), one rejected by ops after the merchant, one withdrawn by the customer.
CASE_PLANS = ("refund_all", "refund_part", "negotiated", "return", "ruled", "rejected", "withdrawn")
CASE_FINAL = frozenset({"refunded", "exchanged", "closed_cancelled", "closed_rejected", "closed_return_expired"})
CASE_GIVE_UP = 300.0  # seconds after the order completed: the load stops driving its case (the drain judges it)
ORDER_STATUS = "SELECT id, status FROM customer_order WHERE id = ANY($1::text[])"
CASE_STATE = "SELECT id, state AS status FROM aftersales_case WHERE id = ANY($1::text[])"
VOUCHERS = 20
VOUCHER_USES = 5
ATTEMPTS_PER_VOUCHER = 8  # more than its uses: the surplus must be refused however the faults fall


@dataclass
class LoadStats:
    placed: int = 0
    paid: int = 0
    final: Counter[str] = field(default_factory=Counter)
    gave_up: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    redeemed: int = 0
    refused_redemptions: int = 0
    over_redeemed: list[str] = field(default_factory=list)
    order_ids: list[str] = field(default_factory=list)
    cases_wanted: int = 0  # completed orders whose customer opens an after-sales case
    cases_opened: int = 0
    cases_final: Counter[str] = field(default_factory=Counter)
    cases_given_up: list[str] = field(default_factory=list)
    case_ids: list[str] = field(default_factory=list)

    def error(self, kind: str) -> None:
        self.errors[kind] += 1


def opens_case(completed: int, share: float) -> bool:
    """Whether the customer of the `completed`-th completed order (counted from 1) opens an after-sales case: `share`
    of them, spread evenly (0.3: the 4th, 7th, 10th ...)."""
    return int(completed * share) > int((completed - 1) * share)


class StatusBoard:
    """The status of every order (or state of every case) being driven, read from its service's database once a
    second by `query` (ids in, `id` and `status` out), reconnecting after a PostgreSQL restart."""

    def __init__(self, bench: Bench, stats: LoadStats, service: str, query: str) -> None:
        self.bench = bench
        self.stats = stats
        self.service = service
        self.query = query
        self.status: dict[str, str] = {}
        self.watched: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        connection: asyncpg.Connection | None = None
        while not stop.is_set():
            try:
                if self.watched:  # connects only once there is something to watch
                    if connection is None or connection.is_closed():
                        connection = await self.bench.connect(self.service)
                    rows = await connection.fetch(self.query, list(self.watched))
                    self.status.update({row["id"]: row["status"] for row in rows})
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                self.stats.error(f"status poll: {self.service} database unreachable")
                connection = None
            await asyncio.sleep(1.0)
        if connection is not None and not connection.is_closed():
            await connection.close()


class Driver:
    def __init__(
        self, bench: Bench, client: httpx.AsyncClient, board: StatusBoard, stats: LoadStats,
        cases: StatusBoard, case_share: float,
    ) -> None:  # fmt: skip
        self.bench = bench
        self.client = client
        self.board = board
        self.stats = stats
        self.cases = cases
        self.case_share = case_share
        self.completed = 0  # orders seen completed, to open cases on a share of them
        self.lines: list[dict[str, object]] = []

    async def send(
        self, role: str, method: str, path: str, expected: tuple[int, ...] = (), **kwargs: object
    ) -> httpx.Response | None:
        """One request; a transport error or a 5xx is counted and answered with None (the caller retries). A 4xx is
        counted as an error unless `expected` (a refusal the load asks for on purpose)."""
        headers = {**self.bench.auth(role), **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        self.stats.requests += 1
        try:
            response = await self.client.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            self.stats.error(f"{method} {_route(path)}: {type(exc).__name__}")
            return None
        if response.status_code >= 400 and response.status_code not in expected:
            self.stats.error(f"{method} {_route(path)}: {response.status_code}")
            return None if response.status_code >= 500 or response.status_code == 429 else response
        return response

    async def find_lines(self, deadline: float) -> None:
        """Every SKU of the demo store, each with the quantity that reaches the store's minimum order: the load
        moves on to the next one when a SKU sells out (refunds put stock back)."""
        while time.monotonic() < deadline:
            store = await self.send("customer", "GET", f"/v1/stores/{DEMO_STORE_ID}")
            products = await self.send("customer", "GET", f"/v1/stores/{DEMO_STORE_ID}/products")
            if store is not None and products is not None and store.status_code == products.status_code == 200:
                minimum = int(store.json()["min_order_fen"])
                self.lines = [
                    {"sku_id": str(sku["id"]), "quantity": max(1, -(-minimum // int(sku["price_fen"])))}
                    for product in products.json()["items"]
                    for sku in product["skus"]
                ]
                return
            await asyncio.sleep(1)
        raise RuntimeError("the catalogue could not be read through the gateway")

    async def place(self, number: int, deadline: float) -> dict[str, Any] | None:
        """Places one order, retried with its Idempotency-Key until answered; another SKU when one is sold out.
        Returns the order as the API answered it."""
        for offset in range(len(self.lines)):
            line = self.lines[(number + offset) % len(self.lines)]
            body = {"store_id": DEMO_STORE_ID, "items": [line], "fulfilment_mode": "delivery",
                    "contact": {"name": "混沌顾客", "phone": "13800000000"}, "note": f"sim:normal chaos #{number}",
                    "address": {"text": "王府井大街 100 号", "lat": CUSTOMER_LAT, "lng": CUSTOMER_LNG}}  # fmt: skip
            key = uuid.uuid4().hex  # the same key on every retry: one order however often the request is re-sent
            while time.monotonic() < deadline:
                answer = await self.send(
                    "customer", "POST", "/v1/orders", expected=(409,), json=body, headers={"Idempotency-Key": key}
                )
                if answer is not None and answer.status_code in (200, 201):
                    order: dict[str, Any] = answer.json()
                    return order
                if answer is not None and answer.status_code == 409 and _problem(answer) == "out-of-stock":
                    break  # the next SKU
                if answer is not None:  # any other 4xx: the request itself is wrong, retrying will not help
                    self.stats.error(f"POST /v1/orders: {answer.status_code} {_problem(answer)}")
                    return None
                await asyncio.sleep(1)
            else:
                self.stats.error("POST /v1/orders: not placed before the window closed")
                return None
        self.stats.error("POST /v1/orders: every SKU sold out")
        return None

    async def pay(self, order_id: str) -> None:
        answer = await self.send("customer", "POST", f"/v1/orders/{order_id}/payment")
        if answer is None or answer.status_code != 200:
            return
        self.stats.requests += 1
        try:
            paid = await self.client.post(
                self.bench.url(WECHATPAY_SANDBOX) + "/sandbox/pay", json={"prepay_id": answer.json()["prepay_id"]}
            )
            if paid.status_code >= 400:
                self.stats.error(f"sandbox pay: {paid.status_code}")
        except httpx.HTTPError as exc:
            self.stats.error(f"sandbox pay: {type(exc).__name__}")

    async def command(self, plan: str, order_id: str, status: str) -> None:
        """The next step of the order's plan from where it stands; nothing when it waits on the platform."""
        path = f"/v1/orders/{order_id}"
        if status == "pending_payment":
            await self.pay(order_id)
        elif status == "paid" and plan == "reject":
            await self.send("merchant", "POST", f"{path}/reject", json={"reason": "混沌测试 拒单"})
        elif status == "paid" and plan == "customer_cancel":
            await self.send("customer", "POST", f"{path}/cancel", json={"reason": "混沌测试 不要了"})
        elif status == "paid":
            await self.send("merchant", "POST", f"{path}/accept")
        elif status == "accepted" and plan == "merchant_cancel":
            await self.send("merchant", "POST", f"{path}/cancel", json={"reason": "混沌测试 售罄"})
        elif status == "accepted":
            await self.send("merchant", "POST", f"{path}/ready")
        elif status == "delivered":
            await self.send("customer", "POST", f"{path}/confirm-receipt")

    async def lifecycle(self, number: int, place_deadline: float) -> tuple[dict[str, Any], str] | None:
        """Places an order and drives it to a final status: (the order as placed, that status), or None when it was
        not placed or the load gave up on it."""
        order = await self.place(number, place_deadline)
        if order is None:
            return None
        order_id = str(order["id"])
        stats = self.stats
        stats.placed += 1
        stats.order_ids.append(order_id)
        self.board.watched.add(order_id)
        plan = PLANS[number % len(PLANS)]
        give_up = time.monotonic() + ORDER_GIVE_UP
        seen: str | None = None
        sent_at = 0.0
        counted_paid = False
        try:
            while time.monotonic() < give_up:
                status = self.board.status.get(order_id, "pending_payment")
                if not counted_paid and status != "pending_payment":
                    counted_paid = True
                    stats.paid += 1
                if status in FINAL:
                    stats.final[status] += 1
                    return order, status
                if status != seen or time.monotonic() - sent_at > RESEND_AFTER:
                    seen, sent_at = status, time.monotonic()
                    await self.command(plan, order_id, status)
                await asyncio.sleep(1.0)
            stats.gave_up.append(order_id)
            return None
        finally:
            self.board.watched.discard(order_id)

    async def after_completion(self, order: dict[str, Any]) -> None:
        """The customer of a share of the completed orders opens an after-sales case, which is then followed to its
        end: the merchant approves, negotiates or rejects it, the customer accepts, ships a return, escalates or
        withdraws, ops rule on an escalation and retry a failed refund; each refund flows from after-sales to the
        order service to the WeChat Pay sandbox."""
        self.completed += 1
        if not opens_case(self.completed, self.case_share):
            return
        stats = self.stats
        plan = CASE_PLANS[stats.cases_wanted % len(CASE_PLANS)]
        stats.cases_wanted += 1
        give_up = time.monotonic() + CASE_GIVE_UP
        case = await self.open_case(order, plan, give_up)
        if case is None:
            return
        case_id, asked = str(case["id"]), int(case["asked_fen"])
        stats.cases_opened += 1
        stats.case_ids.append(case_id)
        self.cases.watched.add(case_id)
        seen: str | None = None
        sent_at = 0.0
        try:
            while time.monotonic() < give_up:
                state = self.cases.status.get(case_id, "requested")
                if state in CASE_FINAL:
                    stats.cases_final[state] += 1
                    return
                if state != seen or time.monotonic() - sent_at > RESEND_AFTER:
                    seen, sent_at = state, time.monotonic()
                    await self.decide(plan, case_id, asked, state)
                await asyncio.sleep(1.0)
            stats.cases_given_up.append(case_id)
        finally:
            self.cases.watched.discard(case_id)

    async def open_case(self, order: dict[str, Any], plan: str, give_up: float) -> dict[str, Any] | None:
        """The customer's application, retried with its Idempotency-Key until answered. The after-sales service
        learns the order (and its delivery) from events, so until its view has caught up the application is refused
        as for an unknown order or one not received yet: asked again a second later."""
        body = {"order_id": order["id"], **_application(order, plan)}
        key = uuid.uuid4().hex
        while time.monotonic() < give_up:
            answer = await self.send(
                "customer", "POST", "/v1/aftersales/cases", expected=(404, 409), json=body,
                headers={"Idempotency-Key": key},
            )  # fmt: skip
            if answer is not None and answer.status_code in (200, 201):
                case: dict[str, Any] = answer.json()
                return case
            if answer is not None and not _view_behind(answer):  # a refusal that asking again will not change
                self.stats.error(f"POST /v1/aftersales/cases: {answer.status_code} {_problem(answer)}")
                return None
            await asyncio.sleep(1)
        self.stats.error("POST /v1/aftersales/cases: not opened before the load gave up")
        return None

    async def decide(self, plan: str, case_id: str, asked: int, state: str) -> None:
        """The next step of the case's plan from where it stands; nothing when it waits on the platform (the refund).
        A 409 is a step re-sent after the case moved on, so it is expected."""
        path = f"/v1/aftersales/cases/{case_id}"
        part = {"amount_fen": max(asked // 2, 1)}
        if state == "requested" and plan == "withdrawn":
            await self.send("customer", "POST", f"{path}/cancel", expected=(409,), json={"note": "混沌测试 不退了"})
        elif state == "requested" and plan == "negotiated":
            await self.send("merchant", "POST", f"{path}/negotiate", expected=(409,),
                            json={**part, "note": "混沌测试 退一半"})  # fmt: skip
        elif state == "requested" and plan in ("ruled", "rejected"):
            await self.send("merchant", "POST", f"{path}/reject", expected=(409,),
                            json={"reason_code": "delivered_as_ordered", "note": "混沌测试 已按订单送达"})  # fmt: skip
        elif state == "requested":
            await self.send("merchant", "POST", f"{path}/approve", expected=(409,))
        elif state == "negotiating":
            await self.send("customer", "POST", f"{path}/accept", expected=(409,))
        elif state == "awaiting_return":
            await self.send("customer", "POST", f"{path}/ship-return", expected=(409,),
                            json={"carrier": "SF", "tracking_no": f"SF{case_id[-12:]}"})  # fmt: skip
        elif state == "return_in_transit":
            await self.send("merchant", "POST", f"{path}/confirm-receipt", expected=(409,))
        elif state == "rejected":
            await self.send("customer", "POST", f"{path}/escalate", expected=(409,), json={"note": "混沌测试 申诉"})
        elif state in ("in_arbitration", "awaiting_ruling"):
            ruling = {"outcome": "refund", **part} if plan == "ruled" else {"outcome": "reject"}
            await self.send("ops", "POST", f"{path}/ruling", expected=(409,), json={**ruling, "note": "混沌测试 裁决"})
        elif state == "refund_failed":
            await self.send("ops", "POST", f"{path}/retry-refund", expected=(409,))


def _application(order: dict[str, Any], plan: str) -> dict[str, Any]:
    """What the customer asks for by the case's plan: the whole order back (every line and the delivery fee, the
    amount left to the service: all refundable), a unit returned, or one unit's refund (half of it for
    `refund_part`)."""
    line = order["items"][0]
    unit = [{"sku_id": str(line["sku_id"]), "quantity": 1}]
    if plan == "refund_all":
        lines = [{"sku_id": str(item["sku_id"]), "quantity": item["quantity"]} for item in order["items"]]
        if order["delivery_fee_fen"]:
            lines.append({"sku_id": "delivery_fee", "quantity": 1})
        return {"type": "refund_only", "reason_code": "late_delivery", "lines": lines, "description": "混沌测试 超时"}
    if plan == "return":
        return {"type": "return_refund", "reason_code": "no_longer_wanted", "lines": unit,
                "description": "混沌测试 不想要了"}  # fmt: skip
    body: dict[str, Any] = {"type": "refund_only", "reason_code": "missing_item", "lines": unit,
                            "description": "混沌测试 少送了一份"}  # fmt: skip
    if plan == "refund_part":
        body["amount_fen"] = max(int(line["price_fen"]) // 2, 1)
    return body


def _view_behind(refusal: httpx.Response) -> bool:
    """An application refused only because the after-sales service has not yet heard of the order or its delivery."""
    if refusal.status_code == 404:
        return _problem(refusal) == "order-not-found"
    try:
        return bool(refusal.json().get("reason") == "not-received-yet")
    except (ValueError, AttributeError):
        return False


def _problem(response: httpx.Response) -> str:
    """The problem+json type of a refusal ("out-of-stock" from "/problems/out-of-stock"), or its status."""
    try:
        return str(response.json().get("type") or response.status_code).rsplit("/", 1)[-1]
    except (ValueError, AttributeError):
        return str(response.status_code)


def _route(path: str) -> str:
    """A path with its ids taken out, to count errors by route."""
    parts = path.split("/")
    return "/".join("{id}" if len(part) > 20 or part[:1].isdigit() else part for part in parts)


async def _vouchers(driver: Driver, stats: LoadStats, deadline: float) -> None:
    """Multi-use vouchers each asked for more uses than it has, concurrently, through the faults; a transport error
    is retried with the same request_no (the service answers a repeated request_no with its first answer)."""
    until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    issue = {"store_id": DEMO_STORE_ID, "customer_id": "chaos-customer", "title": "混沌次卡", "uses": VOUCHER_USES,
             "valid_until": until}  # fmt: skip
    code_ids: list[str] = []
    while len(code_ids) < VOUCHERS and time.monotonic() < deadline:
        answer = await driver.send("merchant", "POST", "/v1/codes/vouchers", json=issue)
        if answer is not None and answer.status_code == 201:
            code_ids.append(str(answer.json()["id"]))
        else:
            await asyncio.sleep(1)
    digits: dict[str, str] = {}
    while len(digits) < len(code_ids) and time.monotonic() < deadline:
        try:
            connection = await driver.bench.connect("redemption")
            try:  # the digits, which only the voucher's customer is shown
                rows = await connection.fetch("SELECT id::text, code FROM code WHERE id = ANY($1::uuid[])", code_ids)
            finally:
                await connection.close()
            digits = {row["id"]: row["code"] for row in rows}
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(1)

    async def redeem(code: str, device: int) -> bool:
        body = {"code": code, "store_id": DEMO_STORE_ID, "request_no": uuid.uuid4().hex, "device_id": f"chaos-{device}"}
        while time.monotonic() < deadline:
            answer = await driver.send("merchant", "POST", "/v1/redemptions", expected=(409,), json=body)
            if answer is not None:
                return answer.status_code == 201
            await asyncio.sleep(1)  # unknown outcome: the same request_no again
        return False

    for code_id, code in digits.items():
        outcomes = await asyncio.gather(*(redeem(code, n) for n in range(ATTEMPTS_PER_VOUCHER)))
        stats.redeemed += sum(outcomes)
        stats.refused_redemptions += len(outcomes) - sum(outcomes)
        if sum(outcomes) > VOUCHER_USES:
            stats.over_redeemed.append(code_id)
        await asyncio.sleep(max((deadline - time.monotonic()) / (2 * len(digits)), 0))


async def _progress(stats: LoadStats, since: float, every: float = 30.0) -> None:
    """A line every `every` seconds while the load runs, so a slow machine is seen to be slow, not hung."""
    while True:
        await asyncio.sleep(every)
        print(f"  t+{time.monotonic() - since:5.0f} s  load: {stats.placed} placed, {stats.paid} paid, "
              f"{sum(stats.final.values())} final, {stats.cases_opened} cases opened, "
              f"{sum(stats.cases_final.values())} closed, {sum(stats.errors.values())} client errors",
              flush=True)  # fmt: skip


async def run_load(
    bench: Bench, orders: int, seconds: float, concurrency: int, stats: LoadStats, case_share: float
) -> None:
    """Places `orders` orders spread over `seconds` (at most `concurrency` being driven at once), drives each to a
    final state, opens an after-sales case on `case_share` of the completed ones and follows it to its end (out of
    the order's slot), and redeems vouchers alongside; returns when every order and case is final or given up."""
    stop = asyncio.Event()
    board = StatusBoard(bench, stats, "order", ORDER_STATUS)
    cases = StatusBoard(bench, stats, "aftersales", CASE_STATE)
    pollers = [asyncio.create_task(board.run(stop)), asyncio.create_task(cases.run(stop))]
    progress = asyncio.create_task(_progress(stats, time.monotonic()))
    limits = httpx.Limits(max_connections=concurrency + 20, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=bench.url("gateway"), limits=limits, timeout=30.0) as client:
        driver = Driver(bench, client, board, stats, cases, case_share)
        started = time.monotonic()
        await driver.find_lines(started + 60)
        place_deadline = started + seconds
        vouchers = asyncio.create_task(_vouchers(driver, stats, place_deadline))
        slots = asyncio.Semaphore(concurrency)
        interval = seconds / orders

        async def one(number: int) -> None:
            try:
                driven = await driver.lifecycle(number, place_deadline + PLACE_GRACE)
            finally:
                slots.release()
            if driven is not None and driven[1] == "completed":
                await driver.after_completion(driven[0])

        tasks = []
        for number in range(orders):
            await slots.acquire()
            tasks.append(asyncio.create_task(one(number)))
            # Spread over the window; a backlog (slots were full) is caught up without waiting.
            await asyncio.sleep(max(started + (number + 1) * interval - time.monotonic(), 0))
        await asyncio.gather(*tasks, vouchers)
    stop.set()
    progress.cancel()
    await asyncio.gather(*pollers)
