"""The four delivery notices (seed 001), each sent exactly once however events arrive, on a grant or by SMS."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.notify.conftest import CUSTOMER, TEMPLATES, NotifyHarness, notify_stack

FOUR = ["rider_accepted", "delivering", "delivered", "delivery_problem"]


async def walk_a_delivery(notify: NotifyHarness, order_id: str) -> None:
    """A delivery with its events redelivered and a rider reassigned on the way, ending in an exception report
    and then delivered."""
    await notify.order(order_id)
    assigned = await notify.delivery(order_id, "rider_assigned", "rider_assigned")
    await notify.feed.deliver(assigned)  # redelivered
    await notify.delivery(order_id, "rider_unassigned", "created", previous_rider={"id": "r-1"})
    await notify.delivery(order_id, "rider_assigned", "rider_assigned",
                          rider={"id": "r-2", "name": "李四", "phone": "13900002222"})  # fmt: skip
    picked = await notify.delivery(order_id, "picked_up", "picked_up")
    await notify.delivery(order_id, "delivering", "delivering")
    await notify.feed.deliver(picked)
    await notify.delivery(order_id, "exception", "delivering", reason="顾客电话无人接听,骑手正在联系中请稍候")
    delivered = await notify.delivery(order_id, "delivered", "delivered")
    await notify.feed.deliver(delivered)


async def test_each_of_the_four_notices_is_sent_once_on_its_grant(notify: NotifyHarness) -> None:
    await notify.use_templates()
    for template_id in TEMPLATES.values():
        await notify.grant(template_id, times=2)
    await walk_a_delivery(notify, "o-1001")
    assert await notify.send() == 5  # the four, and `paid`, which this merchant has no template for
    assert await notify.send() == 0

    messages = await notify.wechat_messages()
    assert sorted(m["template_id"] for m in messages) == sorted(TEMPLATES.values())
    by_template = {m["template_id"]: m for m in messages}
    rider = by_template["tmpl-rider"]
    assert rider["data"]["phrase3"]["value"] == "骑手已接单"
    assert rider["data"]["name4"]["value"] == "张三"  # the first rider's: the reassignment told nobody again
    assert rider["page"] == "pages/track/index?order=o-1001"
    problem = by_template["tmpl-problem"]["data"]
    assert len(problem["thing5"]["value"]) <= 20  # the reason, fitted to `thing`
    assert await notify.sms_messages() == []
    notices = {n["kind"]: n for n in await notify.notices("o-1001")}
    assert sorted(notices) == sorted([*FOUR, "paid"])
    assert {notices[kind]["status"] for kind in FOUR} == {"sent"}
    assert {notices[kind]["channel"] for kind in FOUR} == {"wechat"}
    assert notices["paid"]["status"] == "suppressed"
    balances = (await notify.client.get("/v1/subscriptions", headers=CUSTOMER)).json()
    assert {b["template_id"]: b["open_grants"] for b in balances["balances"]} == dict.fromkeys(TEMPLATES.values(), 1)


async def test_without_a_grant_the_sms_sandbox_gets_the_notice_signed(notify: NotifyHarness) -> None:
    await notify.use_templates()
    await walk_a_delivery(notify, "o-1002")
    assert await notify.send() == 5
    assert await notify.wechat_messages() == []
    sent = await notify.sms_messages()
    # The sandbox verified each request's TC3-HMAC-SHA256 signature before accepting it.
    assert len(sent) == 4
    assert {m["phone_number"] for m in sent} == {"+8613800138000"}
    assert sorted(m["params"][0] for m in sent) == sorted(["骑手已接单", "配送中", "已送达", "配送异常"])
    notices = [n for n in await notify.notices("o-1002") if n["kind"] != "paid"]
    assert {n["channel"] for n in notices} == {"sms"}
    attempts = [a for n in notices for a in n["attempts"]]
    assert {a["result"] for a in attempts if a["channel"] == "wechat"} == {"no_grant"}
    assert {a["recipient"] for a in attempts if a["channel"] == "sms"} == {"138****8000"}  # never whole


async def test_wechat_refusing_a_grant_falls_back_to_sms(notify: NotifyHarness) -> None:
    """We hold a grant WeChat no longer honours (43101): it is marked invalid and the SMS goes instead."""
    await notify.use_templates()
    await notify.client.post("/v1/subscriptions", json={"results": {"tmpl-delivered": "accept"}},
                             headers=CUSTOMER)  # fmt: skip
    await notify.order("o-1003")
    await notify.delivery("o-1003", "delivered", "delivered")
    await notify.send()
    notice = next(n for n in await notify.notices("o-1003") if n["kind"] == "delivered")
    assert notice["status"] == "sent"
    assert notice["channel"] == "sms"
    assert [(a["channel"], a["result"], a["error_code"]) for a in notice["attempts"]] == [
        ("wechat", "no_grant", "43101"), ("sms", "sent", None)]  # fmt: skip
    rows = await notify.sql("SELECT invalid_at IS NOT NULL FROM subscribe_grant")
    assert rows == [(True,)]


async def test_fifty_concurrent_sends_spend_ten_grants_exactly(notify_db_url: str, bootstrap: str) -> None:
    async with notify_stack(notify_db_url, bootstrap, sms_daily_cap=100) as notify:
        await notify.use_templates()
        await notify.grant("tmpl-delivered", times=10)
        for n in range(50):
            await notify.order(f"o-{n:04}")
            await notify.delivery(f"o-{n:04}", "delivered", "delivered")
        # Two couriers (two replicas) at once, each sending its claims concurrently.
        handled = await asyncio.gather(notify.courier.send_due(), notify.courier.send_due())
        assert sum(handled) == 100  # 50 `paid` (no template) and 50 `delivered`
        assert len(await notify.wechat_messages()) == 10
        assert len(await notify.sms_messages()) == 40
        spent = await notify.sql("SELECT count(*) FROM subscribe_grant WHERE consumed_at IS NOT NULL")
        assert spent == [(10,)]
        channels = await notify.sql(
            "SELECT channel, count(*) FROM notice WHERE kind = 'delivered' GROUP BY channel ORDER BY channel"
        )
        assert channels == [("sms", 40), ("wechat", 10)]


async def test_the_daily_sms_cap_holds(notify_db_url: str, bootstrap: str) -> None:
    async with notify_stack(notify_db_url, bootstrap, sms_daily_cap=2) as notify:
        await notify.use_templates()
        for n in range(3):
            await notify.order(f"o-c{n}")
            await notify.delivery(f"o-c{n}", "delivered", "delivered")
        await notify.send()
        assert len(await notify.sms_messages()) == 2
        statuses = await notify.sql(
            "SELECT status, count(*) FROM notice WHERE kind = 'delivered' GROUP BY status ORDER BY status"
        )
        assert statuses == [("failed", 1), ("sent", 2)]


async def test_a_legacy_wechat_delivery_is_not_notified_twice(notify: NotifyHarness) -> None:
    """WeChat's legacy 即时配送 tells the customer itself: our four notices stay suppressed."""
    await notify.use_templates()
    await notify.grant("tmpl-delivered")
    await notify.order("o-1004")
    await notify.delivery("o-1004", "rider_assigned", "rider_assigned", carrier="wechat_legacy")
    await notify.delivery("o-1004", "delivered", "delivered", carrier="wechat_legacy")
    await notify.send()
    assert await notify.wechat_messages() == []
    assert {n["status"] for n in await notify.notices("o-1004")} == {"suppressed"}


async def test_a_merchant_without_templates_sends_nothing_but_the_inbox_has_it(notify: NotifyHarness) -> None:
    await notify.order("o-1005")
    notify.clock.advance(timedelta(minutes=20))
    await notify.delivery("o-1005", "delivered", "delivered")
    await notify.send()
    assert await notify.wechat_messages() == []
    assert await notify.sms_messages() == []
    assert {n["status"] for n in await notify.notices("o-1005")} == {"suppressed"}
    inbox = (await notify.client.get("/v1/notifications", headers=CUSTOMER)).json()
    assert inbox["unread"] == 2  # paid, delivered
    assert inbox["items"][0]["title"] == "已送达"


async def test_a_delivery_event_ahead_of_its_orders_waits_for_it(notify: NotifyHarness) -> None:
    """Topics are not ordered with each other: a delivery's event may come first. It is taken (nothing is held for
    an operator), and its notice goes once the order's own event told the store and the phone."""
    await notify.use_templates()
    await notify.delivery("o-1006", "delivered", "delivered")
    assert await notify.send() == 1
    assert await notify.sms_messages() == []
    [waiting] = await notify.notices("o-1006")
    assert waiting["status"] == "pending"
    await notify.order("o-1006", event="order.completed.v1", status="completed")
    notify.clock.advance(timedelta(seconds=5))
    await notify.send()
    sent = await notify.sms_messages()
    assert [m["phone_number"] for m in sent] == ["+8613800138000"]
    delivered = next(n for n in await notify.notices("o-1006") if n["kind"] == "delivered")
    assert delivered["status"] == "sent"
    wechat_try = await notify.wechat_messages()
    assert wechat_try == []


async def test_a_notice_whose_sender_stopped_mid_call_is_given_up_not_sent_again(notify: NotifyHarness) -> None:
    """A courier killed mid-call leaves its notice `sending`: once the lease ran out, the next round records it
    `unknown` with an attempt saying so (the customer may have been told: never again), and claims the due ones."""
    await notify.use_templates()
    await notify.order("o-1010")
    await notify.delivery("o-1010", "delivered", "delivered")
    await notify.sql(
        "UPDATE notice SET status = 'sending', attempts = 1, lease_until = '2000-01-01T00:00:00Z'"
        " WHERE order_id = 'o-1010' AND kind = 'delivered'"
    )
    await notify.order("o-1011")
    await notify.delivery("o-1011", "delivered", "delivered")
    assert await notify.send() == 3  # both orders' `paid` (no template: suppressed) and o-1011's `delivered`
    abandoned = next(n for n in await notify.notices("o-1010") if n["kind"] == "delivered")
    assert abandoned["status"] == "unknown"
    assert [(a["channel"], a["result"]) for a in abandoned["attempts"]] == [("wechat", "unknown")]
    sent = await notify.sms_messages()
    assert len(sent) == 1  # o-1011's only
    assert next(n for n in await notify.notices("o-1011") if n["kind"] == "delivered")["status"] == "sent"
    assert await notify.send() == 0
