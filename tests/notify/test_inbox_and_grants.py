"""The in-app inbox (unread counts, read marks, each caller's own), the grant ledger's reports from the client and
from WeChat's message push (signed; `List` an object or an array; a retried push or the second report of one popup
adds nothing), and the merchant's templates."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from shared.wechat_push import encrypt_push, msg_signature, push_signature
from tests.notify.conftest import (
    APPID,
    CUSTOMER,
    CUSTOMER_ID,
    MERCHANT,
    OTHER_CUSTOMER,
    OTHER_MERCHANT,
    OTHER_STORE_STAFF,
    STORE_STAFF,
    NotifyHarness,
    notify_stack,
)
from tests.support import bearer

PUSH_TOKEN = "push-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


async def test_the_inbox_counts_unread_and_is_each_callers_own(notify: NotifyHarness) -> None:
    await notify.order("o-4001")  # paid: the customer's notice and the merchant's "new order"
    notify.clock.advance(timedelta(seconds=30))
    await notify.order("o-4001", event="order.accepted.v1", status="accepted")
    mine = (await notify.client.get("/v1/notifications", headers=CUSTOMER)).json()
    assert mine["unread"] == 2
    assert [i["title"] for i in mine["items"]] == ["商家已接单", "已支付"]
    assert (await notify.client.get("/v1/notifications", headers=OTHER_CUSTOMER)).json()["unread"] == 0
    staff = (await notify.client.get("/v1/notifications", headers=STORE_STAFF)).json()
    assert [i["title"] for i in staff["items"]] == ["新订单"]
    assert (await notify.client.get("/v1/notifications", headers=OTHER_STORE_STAFF)).json()["items"] == []
    assert (await notify.client.get("/v1/notifications", headers=OTHER_MERCHANT)).json()["items"] == []

    item = mine["items"][0]["id"]
    assert (await notify.client.post(f"/v1/notifications/{item}/read", headers=OTHER_CUSTOMER)).status_code == 404
    assert (await notify.client.post(f"/v1/notifications/{item}/read", headers=CUSTOMER)).json() == {"marked": 1}
    after = (await notify.client.get("/v1/notifications?unread=true", headers=CUSTOMER)).json()
    assert after["unread"] == 1
    assert len(after["items"]) == 1
    assert (await notify.client.post("/v1/notifications/read", headers=CUSTOMER)).json() == {"marked": 1}
    await notify.order("o-4001", event="order.accepted.v1", status="accepted")  # a replay adds nothing
    assert (await notify.client.get("/v1/notifications", headers=CUSTOMER)).json()["unread"] == 0


async def test_a_tracking_links_principal_reads_neither_the_inbox_nor_the_grants(notify: NotifyHarness) -> None:
    await notify.order("o-4002")  # paid: a notice in the customer's inbox
    tracking = bearer("customer", CUSTOMER_ID, "m-1", order_id="o-4002")
    assert (await notify.client.get("/v1/notifications", headers=CUSTOMER)).json()["items"] != []
    for path in ("/v1/notifications", "/v1/subscriptions"):
        refused = await notify.client.get(path, headers=tracking)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"


def signed(token: str, timestamp: int, nonce: str = "n1") -> dict[str, str]:
    return {"signature": push_signature(token, str(timestamp), nonce), "timestamp": str(timestamp), "nonce": nonce}


def popup(create_time: int, *items: tuple[str, str]) -> dict[str, object]:
    entries = [{"TemplateId": t, "SubscribeStatusString": s, "PopupScene": "0"} for t, s in items]
    return {"ToUserName": "gh_1", "FromUserName": CUSTOMER_ID, "CreateTime": create_time, "MsgType": "event",
            "Event": "subscribe_msg_popup_event", "List": entries[0] if len(entries) == 1 else entries}  # fmt: skip


async def balances(notify: NotifyHarness) -> dict[str, int]:
    answer = (await notify.client.get("/v1/subscriptions", headers=CUSTOMER)).json()
    return {b["template_id"]: b["open_grants"] for b in answer["balances"]}


async def test_push_events_record_and_void_grants(notify_db_url: str, bootstrap: str) -> None:
    async with notify_stack(notify_db_url, bootstrap, wechat_push_token=PUSH_TOKEN) as notify:
        now = int(notify.clock.now().timestamp())
        path = "/v1/notifications/wechat/push"
        one = await notify.client.post(path, params=signed(PUSH_TOKEN, now), json=popup(now, ("t-a", "accept")))
        assert one.status_code == 200
        assert one.text == "success"
        several = popup(now + 1, ("t-a", "accept"), ("t-b", "accept"), ("t-c", "reject"))
        assert (await notify.client.post(path, params=signed(PUSH_TOKEN, now), json=several)).status_code == 200
        # WeChat retries a push it got no answer to: the same one again changes nothing.
        assert (await notify.client.post(path, params=signed(PUSH_TOKEN, now), json=several)).status_code == 200
        assert await balances(notify) == {"t-a": 2, "t-b": 1}
        # The mini-program's own report of the popup the push told of is the same grant.
        await notify.client.post("/v1/subscriptions", json={"results": {"t-b": "accept"}}, headers=CUSTOMER)
        assert await balances(notify) == {"t-a": 2, "t-b": 1}
        change = {"FromUserName": CUSTOMER_ID, "CreateTime": now + 2, "MsgType": "event",
                  "Event": "subscribe_msg_change_event",
                  "List": {"TemplateId": "t-a", "SubscribeStatusString": "reject"}}  # fmt: skip
        assert (await notify.client.post(path, params=signed(PUSH_TOKEN, now), json=change)).status_code == 200
        assert await balances(notify) == {"t-b": 1}

        forged = await notify.client.post(
            path, params=signed("not-the-token", now), json=popup(now + 3, ("t-a", "accept"))
        )
        assert forged.status_code == 401
        stale = await notify.client.post(
            path, params=signed(PUSH_TOKEN, now - 3600), json=popup(now + 4, ("t-a", "accept"))
        )
        assert stale.status_code == 401
        assert await balances(notify) == {"t-b": 1}
        check = await notify.client.get(path, params=signed(PUSH_TOKEN, now) | {"echostr": "hello"})
        assert check.status_code == 200
        assert check.text == "hello"


async def test_safe_mode_takes_only_sealed_pushes(notify_db_url: str, bootstrap: str) -> None:
    async with notify_stack(notify_db_url, bootstrap, wechat_push_token=PUSH_TOKEN,
                            wechat_push_aes_key=AES_KEY) as notify:  # fmt: skip
        now = int(time.time())
        path = "/v1/notifications/wechat/push"
        plain = await notify.client.post(path, params=signed(PUSH_TOKEN, now), json=popup(now, ("t-a", "accept")))
        assert plain.status_code == 401
        encrypt = encrypt_push(AES_KEY, APPID, json.dumps(popup(now, ("t-a", "accept"))).encode())
        sealing = {"encrypt_type": "aes", "msg_signature": msg_signature(PUSH_TOKEN, str(now), "n1", encrypt)}
        params = signed(PUSH_TOKEN, now) | sealing
        sealed = await notify.client.post(path, params=params, json={"ToUserName": "gh_1", "Encrypt": encrypt})
        assert sealed.status_code == 200, sealed.text
        assert await balances(notify) == {"t-a": 1}
        other_app = encrypt_push(AES_KEY, "wx-other", json.dumps(popup(now + 1, ("t-a", "accept"))).encode())
        params["msg_signature"] = msg_signature(PUSH_TOKEN, str(now), "n1", other_app)
        refused = await notify.client.post(path, params=params, json={"ToUserName": "gh_1", "Encrypt": other_app})
        assert refused.status_code == 401


async def test_a_client_cannot_mint_a_budget(notify_db_url: str, bootstrap: str) -> None:
    async with notify_stack(notify_db_url, bootstrap, max_open_grants=3) as notify:
        for _ in range(3):
            ok = await notify.client.post("/v1/subscriptions", json={"results": {"t-a": "accept"}}, headers=CUSTOMER)
            assert ok.status_code == 200
        refused = await notify.client.post("/v1/subscriptions", json={"results": {"t-a": "accept"}}, headers=CUSTOMER)
        assert refused.status_code == 409
        assert refused.headers["content-type"].startswith("application/problem+json")
        bad = await notify.client.post("/v1/subscriptions", json={"results": {"t-a": "maybe"}}, headers=CUSTOMER)
        assert bad.status_code == 422
        staff = await notify.client.post("/v1/subscriptions", json={"results": {"t-a": "accept"}}, headers=MERCHANT)
        assert staff.status_code == 403


async def test_templates_are_validated_and_the_merchant_admins(notify: NotifyHarness) -> None:
    good = {"template_id": "tmpl-1", "fields": {"character_string1": "order_no", "phrase2": "status"}}
    assert (await notify.client.put("/v1/notifications/templates/delivered", json=good,
                                    headers=MERCHANT)).status_code == 200  # fmt: skip
    for body in ({"template_id": "tmpl-1", "fields": {"bogus1": "order_no"}},
                 {"template_id": "tmpl-1", "fields": {"thing1": "password"}},
                 {"sms_fallback": True},
                 {"template_id": "tmpl-1", "fields": {}}):  # fmt: skip
        response = await notify.client.put("/v1/notifications/templates/delivered", json=body, headers=MERCHANT)
        assert response.status_code == 422, body
    assert (await notify.client.put("/v1/notifications/templates/nope", json=good, headers=MERCHANT)).status_code == 422
    assert (await notify.client.put("/v1/notifications/templates/delivered", json=good,
                                    headers=STORE_STAFF)).status_code == 403  # fmt: skip
    listed = (await notify.client.get("/v1/notifications/templates", headers=MERCHANT)).json()
    assert [t["notice"] for t in listed] == ["delivered"]
    assert (await notify.client.get("/v1/notifications/templates", headers=OTHER_MERCHANT)).json() == []
