"""The demo's after-sales step: the customer of a delivered order asks for part of it back (the egg never came),
the merchant approves, and the refund goes through the order service to WeChat Pay (sandbox) and back.

A separate module, called from the demo's walk with one line, so the demo can move without this step changing."""

from __future__ import annotations

import time
import uuid
from typing import Any, Protocol

import httpx


class Walk(Protocol):
    """What this step uses of the demo's walk (deploy/local/demo.py), which calls it."""

    gateway: httpx.Client
    tokens: dict[str, str]

    def step(self, text: str) -> None: ...
    def say(self, line: str) -> None: ...
    def call(self, role: str, method: str, path: str, **kwargs: Any) -> Any: ...


def _until(check: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        answer = check()
        if answer is not None:
            return answer
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {within:.0f} s")
        time.sleep(0.3)


def partial_refund(walk: Walk, order_id: str, sku_id: str) -> None:
    """The amount is left out: the service offers what is refundable for the line (the egg's price)."""
    walk.step("The customer says the egg never came and asks for it back; the merchant approves")
    body = {
        "order_id": order_id,
        "type": "refund_only",
        "reason_code": "missing_item",
        "description": "卤蛋没有送到",
        "lines": [{"sku_id": sku_id, "quantity": 1}],
    }
    key = {"Idempotency-Key": uuid.uuid4().hex}

    def apply() -> Any:
        # The after-sales service learns of the delivery from dispatch's events: wait until it has.
        response = walk.gateway.post(
            "/v1/aftersales/cases", json=body, headers={**key, "Authorization": f"Bearer {walk.tokens['customer']}"}
        )
        return response.json() if response.status_code in (200, 201) else None

    case = _until(apply, 20, "the after-sales application")  # fmt: skip
    walk.say(f"    customer POST /v1/aftersales/cases → case {case['id']}: {case['state']}, "
             f"¥{case['asked_fen'] / 100:.2f}, the merchant answers by {case['deadline_at']}")  # fmt: skip
    approved = walk.call("merchant", "POST", f"/v1/aftersales/cases/{case['id']}/approve")
    walk.say(f"    case is {approved['state']}: the order service refunds it through WeChat Pay")

    def refunded() -> Any:
        answer = walk.gateway.get(
            f"/v1/aftersales/cases/{case['id']}", headers={"Authorization": f"Bearer {walk.tokens['customer']}"}
        ).json()
        return answer if answer.get("state") in ("refunded", "refund_failed") else None

    done = _until(refunded, 20, "the refund")
    walk.say(f"    case is {done['state']}: agreed ¥{done['agreed_fen'] / 100:.2f}, "
             f"refunded ¥{(done['refunded_fen'] or 0) / 100:.2f}")  # fmt: skip
