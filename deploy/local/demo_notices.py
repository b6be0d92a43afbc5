"""The demo's notices: at payment the customer accepts the delivery notices' subscribe-message prompt (the WeChat
API sandbox keeps the grants WeChat would), and at the end the walk prints what each order's customer was told, on
which channel: a subscribe message on a grant, or the SMS stand-in once the grants are spent.

A separate module, called from the demo's walk with one line each, so the demo can move without this step changing."""

from __future__ import annotations

import time
from typing import Any, Protocol

import httpx

from deploy.local.seed import demo_template_id

# The four delivery notices (seed 001), asked for at payment: WeChat shows at most a few templates per prompt.
ASKED = ("rider_accepted", "delivering", "delivered", "delivery_problem")


class Walk(Protocol):
    """What this step uses of the demo's walk (deploy/local/demo.py), which calls it."""

    gateway: httpx.Client
    tokens: dict[str, str]

    def step(self, text: str) -> None: ...
    def say(self, line: str) -> None: ...
    def call(self, role: str, method: str, path: str, **kwargs: Any) -> Any: ...


def accept_prompt(walk: Walk, wechat_api_url: str | None, openid: str) -> None:
    """The customer taps "allow" on wx.requestSubscribeMessage: WeChat keeps one grant per template, and the
    mini-program forwards the result to notify."""
    results = {demo_template_id(notice): "accept" for notice in ASKED}
    if wechat_api_url:
        for template_id in results:
            httpx.post(f"{wechat_api_url}/sandbox/grants", json={"openid": openid, "template_id": template_id},
                       timeout=10).raise_for_status()  # fmt: skip
    answer = walk.call("customer", "POST", "/v1/subscriptions", json={"results": results})
    walk.say(f"    the customer allows {len(results)} delivery notices once each ({answer['recorded']} grants)")


def print_notices(walk: Walk, order_ids: list[str], within: float = 15.0) -> None:
    walk.step("What the customer was told (notify: subscribe messages on grants, SMS once they are spent)")
    deadline = time.monotonic() + within
    for order_id in order_ids:
        notices = walk.call("merchant", "GET", f"/v1/notifications/notices?order_id={order_id}")
        while any(n["status"] in ("pending", "sending") for n in notices) and time.monotonic() < deadline:
            time.sleep(0.3)
            notices = walk.call("merchant", "GET", f"/v1/notifications/notices?order_id={order_id}")
        walk.say(f"    order {order_id}:")
        for notice in sorted(notices, key=lambda n: n["created_at"]):
            how = notice["channel"] or notice["detail"] or ""
            walk.say(f"      {notice['kind']:<20} {notice['status']:<10} {how}")
    inbox = walk.call("customer", "GET", "/v1/notifications?limit=3")
    walk.say(f"    in-app inbox: {inbox['unread']} unread; newest: " + ", ".join(i["title"] for i in inbox["items"]))
