"""Merchant webhooks: Standard Webhooks signatures (checked by the reference library and by hand), retries on the
schedule, exactly one more delivery after failures, disabling on 410, rotation, replay, and SSRF refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

from standardwebhooks import Webhook

from tests.notify.conftest import CUSTOMER_ID, MERCHANT, OTHER_MERCHANT, STORE_STAFF, NotifyHarness, notify_stack
from tests.support import count


async def register(notify: NotifyHarness, **body: Any) -> dict[str, Any]:
    response = await notify.client.post("/v1/webhooks", json={"url": notify.receiver_url} | body, headers=MERCHANT)
    assert response.status_code == 201, response.text
    return dict(response.json())


def verify_by_hand(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """An implementation of the spec of our own, apart from the library the service signs with."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return any(sig == f"v1,{expected}" for sig in headers["webhook-signature"].split(" "))


async def test_a_failing_endpoint_gets_the_message_exactly_once_more(notify_db_url: str, bootstrap: str) -> None:
    # A schedule of seconds, so the receiver checks the signature's timestamp against its own clock.
    async with notify_stack(notify_db_url, bootstrap, webhook_schedule_seconds=[0, 1, 2, 3, 60]) as notify:
        await fail_three_times_then_succeed(notify)


async def fail_three_times_then_succeed(notify: NotifyHarness) -> None:
    endpoint = await register(notify, event_types=["order.paid"])
    notify.receiver.script = [500, 503, 502]
    await notify.order("o-2001")  # order.paid
    await notify.order("o-2001", event="order.accepted.v1")  # not asked for
    assert await notify.push_webhooks() == 1
    for _ in range(4):
        notify.clock.advance(timedelta(seconds=4))
        await notify.push_webhooks()
    notify.clock.advance(timedelta(days=3))
    assert await notify.push_webhooks() == 0  # done: nothing more is sent
    assert [status for _, _, status in notify.receiver.received] == [500, 503, 502, 200]
    ids = {headers["webhook-id"] for headers, _, _ in notify.receiver.received}
    assert len(ids) == 1  # one message, one id, however often tried
    headers, body = notify.receiver.delivered()[0]
    assert Webhook(endpoint["secret"]).verify(body, headers)["type"] == "order.paid"
    assert verify_by_hand(endpoint["secret"], headers, body)
    payload = json.loads(body)
    assert payload["data"]["order_id"] == "o-2001"
    assert payload["timestamp"]
    page = (await notify.client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=MERCHANT)).json()
    delivery = page["items"][0]
    assert delivery["status"] == "succeeded"
    assert delivery["attempts"] == 4
    assert [a["status_code"] for a in delivery["history"]] == [500, 503, 502, 200]


async def test_the_schedule_waits_between_attempts(notify: NotifyHarness) -> None:
    await register(notify)
    notify.receiver.script = [500, 500]
    await notify.order("o-2002")
    assert await notify.push_webhooks() == 1
    assert await notify.push_webhooks() == 0  # the next try is 5 s away
    notify.clock.advance(timedelta(seconds=6))
    assert await notify.push_webhooks() == 1
    notify.clock.advance(timedelta(seconds=60))
    assert await notify.push_webhooks() == 0  # then 5 min
    notify.clock.advance(timedelta(minutes=6))
    assert await notify.push_webhooks() == 1
    assert len(notify.receiver.delivered()) == 1


async def test_410_disables_the_endpoint_and_reenabling_resumes(notify: NotifyHarness) -> None:
    endpoint = await register(notify)
    notify.receiver.script = [410]
    await notify.order("o-2003")
    await notify.push_webhooks()
    read = (await notify.client.get(f"/v1/webhooks/{endpoint['id']}", headers=MERCHANT)).json()
    assert read["enabled"] is False
    assert "410" in read["disabled_reason"]
    await notify.order("o-2004")  # a disabled endpoint is handed nothing new
    notify.clock.advance(timedelta(days=1))
    assert await notify.push_webhooks() == 0
    again = await notify.client.patch(f"/v1/webhooks/{endpoint['id']}", json={"enabled": True}, headers=MERCHANT)
    assert again.status_code == 200
    assert again.json()["enabled"] is True
    replay = await notify.client.post(f"/v1/webhooks/{endpoint['id']}/replay",
                                      params={"since": (notify.clock.now() - timedelta(days=2)).isoformat()},
                                      headers=MERCHANT)  # fmt: skip
    assert replay.status_code == 200
    assert replay.json() == {"replayed": 1}
    assert await notify.push_webhooks() == 1
    assert len(notify.receiver.delivered()) == 1


async def test_rotation_signs_with_both_secrets_for_the_overlap(notify: NotifyHarness) -> None:
    endpoint = await register(notify)
    rotated = await notify.client.post(f"/v1/webhooks/{endpoint['id']}/secret/rotate", headers=MERCHANT)
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    await notify.order("o-2005")
    await notify.push_webhooks()
    headers, body = notify.receiver.delivered()[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(endpoint["secret"]).verify(body, headers)
    assert Webhook(new).verify(body, headers)
    notify.clock.advance(timedelta(hours=25))
    await notify.order("o-2006")
    await notify.push_webhooks()
    headers, body = notify.receiver.delivered()[1]
    assert verify_by_hand(new, headers, body)
    assert not verify_by_hand(endpoint["secret"], headers, body)


async def test_one_delivery_is_replayed_with_its_id(notify: NotifyHarness) -> None:
    endpoint = await register(notify)
    await notify.order("o-2007")
    await notify.push_webhooks()
    delivery = (await notify.client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=MERCHANT)).json()
    delivery_id = delivery["items"][0]["id"]
    retried = await notify.client.post(f"/v1/webhooks/{endpoint['id']}/deliveries/{delivery_id}/retry",
                                       headers=MERCHANT)  # fmt: skip
    assert retried.json() == {"replayed": 1}
    await notify.push_webhooks()
    first, second = notify.receiver.delivered()
    assert first[0]["webhook-id"] == second[0]["webhook-id"]
    assert first[1] == second[1]


async def test_loopback_private_and_metadata_targets_are_refused_by_default(notify_db_url: str,
                                                                           bootstrap: str) -> None:  # fmt: skip
    async with notify_stack(notify_db_url, bootstrap, webhook_allow_private_targets=False) as notify:
        for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.0.0.5/hook",
                    "http://169.254.169.254/latest/meta-data", "http://[::1]/hook", "http://[::ffff:127.0.0.1]/",
                    "http://100.64.0.1/", "ftp://example.com/", "https://user:pw@example.com/"):  # fmt: skip
            response = await notify.client.post("/v1/webhooks", json={"url": url}, headers=MERCHANT)
            assert response.status_code == 422, (url, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
        assert (await notify.client.get("/v1/webhooks", headers=MERCHANT)).json() == []


async def test_an_endpoint_that_turns_private_later_is_not_called(notify_db_url: str, bootstrap: str) -> None:
    """The address is checked again on every call (a DNS answer may change after registration)."""
    async with notify_stack(notify_db_url, bootstrap) as notify:
        endpoint = await register(notify)
        notify.service_app.state.settings.webhook_allow_private_targets = False
        await notify.order("o-2008")
        await notify.push_webhooks()
        assert notify.receiver.received == []
        page = (await notify.client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=MERCHANT)).json()
        assert "not a public address" in page["items"][0]["last_error"]


async def test_endpoints_are_the_merchant_admins_own(notify: NotifyHarness) -> None:
    endpoint = await register(notify)
    for headers in (OTHER_MERCHANT, STORE_STAFF):
        assert (await notify.client.get(f"/v1/webhooks/{endpoint['id']}", headers=headers)).status_code == 404
        assert (await notify.client.post(f"/v1/webhooks/{endpoint['id']}/secret/rotate",
                                         headers=headers)).status_code == 404  # fmt: skip
    assert (await notify.client.get("/v1/webhooks", headers=OTHER_MERCHANT)).json() == []
    assert (await notify.client.get("/v1/webhooks", headers=STORE_STAFF)).status_code == 403
    bad = await notify.client.post("/v1/webhooks", json={"url": notify.receiver_url, "event_types": ["order.nope"]},
                                   headers=MERCHANT)  # fmt: skip
    assert bad.status_code == 422


async def test_a_vouchers_redemption_is_skipped_before_any_transaction_unless_a_webhook_wants_it(
    notify: NotifyHarness,
) -> None:
    voucher = {"code_id": "c-1", "kind": "voucher", "order_id": None, "merchant_id": "m-1", "store_id": "s-1",
               "customer_id": CUSTOMER_ID, "status": "active"}  # fmt: skip
    await notify.deliver("code.redeemed.v1", "c-1", **voucher)
    await register(notify, event_types=["order.paid"])  # an endpoint, but not for codes
    await notify.deliver("code.redeemed.v1", "c-1", **voucher)
    assert await count(notify.sessionmaker, "SELECT count(*) FROM inbox") == 0  # no transaction, no inbox row
    assert await notify.push_webhooks() == 0

    await register(notify, event_types=["code.redeemed"])
    redeemed = await notify.deliver("code.redeemed.v1", "c-1", **voucher)
    await notify.deliver("code.issued.v1", "c-2", **voucher | {"code_id": "c-2"})  # not asked for
    assert await count(notify.sessionmaker, "SELECT count(*) FROM inbox") == 1
    assert await notify.push_webhooks() == 1
    headers, body = notify.receiver.delivered()[0]
    assert headers["webhook-id"] == f"msg_{redeemed.id.hex}"
    assert json.loads(body)["data"]["code_id"] == "c-1"
