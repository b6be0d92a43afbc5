"""Callbacks prove who sent them: each is verified with the account of the offer it names (so another merchant's
account, or a squatter on the same app key, changes nothing), a report dated in the future is refused, a callback
without a secret (Dada) or without the body signed (WeChat legacy) only prompts a query whose answer is applied,
WeChat pushes are fresh and their nonces single-use, safe mode opens pushes encrypted by `wechatpy`, and bodies that
are not the carrier's format, too large or refused are answered 4xx in the carrier's own shape and kept only as a
digest and prefix until pruned. Every signature is computed here from DOMAIN.md's formulas (through each wire's
functions, which test_carriers checks against them) or by a third-party SDK."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import xmltodict
from dada_openapi_client.dada_client import DdMakeSign
from sqlalchemy import text
from wechatpy.crypto import WeChatCrypto

from services.dispatch.callback_queue import CallbackQueue
from services.dispatch.carriers import WIRES, wechat
from services.dispatch.carriers.base import Credentials, Message, Op
from services.dispatch.carriers.client import CarrierClient
from tests.dispatch.conftest import MERCHANT, OPS, OTHER_MERCHANT, WECHAT_APPID, DispatchHarness

SECRET_SCHEMES = [name for name in WIRES if name != "dada"]


def _creds(account: dict[str, Any], **override: str) -> Credentials:
    fields = {key: account[key] for key in ("app_key", "app_secret", "shop_id", "merchant_no", "token")}
    return Credentials(**(fields | override), brand="SFTC")  # type: ignore[arg-type]


async def _live_offer(dispatch: DispatchHarness) -> tuple[str, dict[str, Any]]:
    """A delivery waiting for a rider (the simulator sits on it), and its one offer."""
    order_id = await dispatch.order_ready(note="sim:slow_accept")
    await dispatch.fire()
    return order_id, (await dispatch.delivery(order_id))["offers"][0]


def _fields(carrier: str, offer: dict[str, Any], step: str, action: datetime, **extra: Any) -> dict[str, Any]:
    return {"shop_order_id": offer["shop_order_id"], "waybill_id": offer["waybill_id"],
            "status": WIRES[carrier].emits[step], "action_time": int(action.timestamp()), **extra}  # fmt: skip


async def _post(dispatch: DispatchHarness, carrier: str, message: Message) -> httpx.Response:
    return await dispatch.client.post(
        f"/v1/carriers/{carrier}/callback",
        params=dict(message.params),
        content=message.body,
        headers={"Content-Type": message.content_type},
    )


async def _log(dispatch: DispatchHarness, carrier: str) -> list[dict[str, Any]]:
    page = (await dispatch.client.get(f"/v1/carriers/callbacks?carrier={carrier}&limit=100", headers=OPS)).json()
    return list(page["items"])


@pytest.mark.parametrize("carrier", SECRET_SCHEMES)
async def test_a_callback_signed_by_another_merchants_account_is_refused(
    dispatch: DispatchHarness, carrier: str
) -> None:
    wire = WIRES[carrier]
    await dispatch.bind(carrier)
    theirs = dispatch.accounts[carrier]
    await dispatch.bind(carrier, store_id="s-2", headers=OTHER_MERCHANT)  # merchant m-2's own, genuine account
    mine = dispatch.accounts[carrier]
    order_id, offer = await _live_offer(dispatch)
    forged = wire.encode_callback(
        _creds(mine), _fields(carrier, offer, "delivered", datetime.now(UTC)), dispatch.clock.now()
    )
    refused = await _post(dispatch, carrier, forged)
    assert refused.status_code == wire.reject_status
    assert refused.json() == wire.reject
    await dispatch.fire()
    assert (await dispatch.delivery(order_id))["status"] == "created"
    genuine = wire.encode_callback(
        _creds(theirs), _fields(carrier, offer, "rider_assigned", datetime.now(UTC)), dispatch.clock.now()
    )
    assert (await _post(dispatch, carrier, genuine)).status_code == 200


async def test_binding_a_victims_app_key_neither_breaks_their_callbacks_nor_forges_them(
    dispatch: DispatchHarness,
) -> None:
    victim = (await dispatch.sim.post("/_sim/accounts", json={"carrier": "sf", "app_key": "sf-victim"})).json()
    squat = {"store_id": "s-2", "carrier": "sf", "app_key": "sf-victim", "app_secret": "the squatter's own"}
    assert (await dispatch.client.post("/v1/carriers/accounts", json=squat, headers=OTHER_MERCHANT)).status_code == 201
    bound = {"store_id": "s-1", **{key: victim[key] for key in ("carrier", "app_key", "app_secret", "shop_id")}}
    assert (await dispatch.client.post("/v1/carriers/accounts", json=bound, headers=MERCHANT)).status_code == 201
    order_id, offer = await _live_offer(dispatch)
    squatter = _creds(victim, app_secret="the squatter's own")
    forged = WIRES["sf"].encode_callback(
        squatter, _fields("sf", offer, "delivered", datetime.now(UTC)), dispatch.clock.now()
    )
    assert (await _post(dispatch, "sf", forged)).status_code == 401
    genuine = WIRES["sf"].encode_callback(
        _creds(victim), _fields("sf", offer, "rider_assigned", datetime.now(UTC)), dispatch.clock.now()
    )
    assert (await _post(dispatch, "sf", genuine)).status_code == 200
    await dispatch.fire()
    assert (await dispatch.delivery(order_id))["status"] == "rider_assigned"
    delivered = await dispatch.order_ready(note="sim:normal")  # the simulator's own callbacks, signed by the victim's
    await dispatch.settle(delivered, "delivered")


async def test_a_deliverys_callbacks_are_applied_in_arrival_order_even_behind_another_workers(
    dispatch: DispatchHarness,
) -> None:
    await dispatch.bind("sf")
    order_id, offer = await _live_offer(dispatch)
    sent = datetime.now(UTC) - timedelta(minutes=2)
    for n, step in enumerate(("rider_assigned", "rider_at_store")):
        fields = _fields("sf", offer, step, sent + timedelta(minutes=n))
        message = WIRES["sf"].encode_callback(_creds(dispatch.accounts["sf"]), fields, dispatch.clock.now())
        assert (await _post(dispatch, "sf", message)).status_code == 200
    queue = CallbackQueue(dispatch.dispatcher, dispatch.sessionmaker, batch_size=100, poll_seconds=0)
    async with dispatch.sessionmaker() as other, other.begin():  # another worker holds the first one
        await other.execute(
            text("SELECT id FROM carrier_callback WHERE outcome = 'pending' ORDER BY seq LIMIT 1 FOR UPDATE")
        )
        assert await queue.apply_pending() == 1
        assert queue.deferred == 1  # the second waits for it
    assert [c["outcome"] for c in await _log(dispatch, "sf")] == ["pending", "pending"]
    assert (await dispatch.delivery(order_id))["status"] == "created"
    await dispatch.fire()
    delivery = await dispatch.delivery(order_id)
    assert [h["status"] for h in delivery["history"] if h["verdict"] == "applied"] == [
        "rider_assigned", "rider_at_store",
    ]  # fmt: skip
    assert sorted(c["outcome"] for c in await _log(dispatch, "sf")) == ["applied", "applied"]


@pytest.mark.parametrize("carrier", list(WIRES))
async def test_every_kept_callback_waits_pending_with_its_offer_until_applied(
    dispatch: DispatchHarness, carrier: str
) -> None:
    """The first callback about an offer looks the offer up (and is kept in the request's transaction), a later one
    is verified with the remembered offer (and kept by one statement of its own): both are kept `pending`, for the
    apply worker, which is the only way out of `pending`."""
    wire = WIRES[carrier]
    await dispatch.bind(carrier)
    creds = _creds(dispatch.accounts[carrier])
    order_id, offer = await _live_offer(dispatch)
    sent = datetime.now(UTC) - timedelta(minutes=2)
    for n, step in enumerate(("rider_assigned", "delivered")):
        action = sent + timedelta(minutes=n)
        message = wire.encode_callback(creds, _fields(carrier, offer, step, action), dispatch.clock.now())
        assert (await _post(dispatch, carrier, message)).status_code == 200
    kept = await dispatch.sql(
        "SELECT outcome, offer_id::text, delivery_id IS NOT NULL, attempts, processed_at, error FROM carrier_callback"
    )
    # A carrier whose callbacks only prompt a query: the second stands behind the first, still waiting for it.
    assert kept == [("pending", offer["id"], True, 0, None, None)] * (1 if wire.confirm_by_query else 2)
    await dispatch.fire()
    assert await dispatch.sql("SELECT count(*) FROM carrier_callback WHERE outcome = 'pending'") == [(0,)]
    if not wire.confirm_by_query:
        assert (await dispatch.delivery(order_id))["status"] == "delivered"


async def test_a_callback_delivered_again_twice_at_once_has_one_effect(dispatch: DispatchHarness) -> None:
    """A carrier sending a callback again, twice at once (retrying): every copy is acknowledged and kept, each by one
    statement of its own (its offer is remembered), and applying them all gives one change and one event."""
    await dispatch.bind("sf")
    order_id, offer = await _live_offer(dispatch)
    fields = _fields("sf", offer, "rider_assigned", datetime.now(UTC) - timedelta(minutes=1))
    message = WIRES["sf"].encode_callback(_creds(dispatch.accounts["sf"]), fields, dispatch.clock.now())
    await _post(dispatch, "sf", message)  # the first names the offer: it is remembered for the two below
    await dispatch.fire()
    again = await asyncio.gather(*(_post(dispatch, "sf", message) for _ in range(2)))
    assert [answer.status_code for answer in again] == [200, 200]
    await dispatch.fire()
    assert sorted(c["outcome"] for c in await _log(dispatch, "sf")) == ["applied", "duplicate", "duplicate"]
    assert (await dispatch.events(order_id)).count("delivery.rider_assigned.v1") == 1
    changes = await dispatch.sql("SELECT verdict FROM delivery_change WHERE source = 'callback'")
    assert changes == [("applied",)]


async def test_a_callback_failing_in_a_round_is_recorded_and_the_others_effects_kept(
    dispatch: DispatchHarness,
) -> None:
    """A round applies its callbacks without savepoints; one that fails undoes the round, which is taken again with
    a savepoint per callback: the failure is recorded (and retried later), the others applied, in order."""
    await dispatch.bind("sf")
    order_id, offer = await _live_offer(dispatch)
    sent = datetime.now(UTC) - timedelta(minutes=3)
    creds = _creds(dispatch.accounts["sf"])

    async def post(step: str, minutes: int) -> None:
        fields = _fields("sf", offer, step, sent + timedelta(minutes=minutes))
        assert (await _post(dispatch, "sf", WIRES["sf"].encode_callback(creds, fields, sent))).status_code == 200

    await post("rider_assigned", 0)
    # Kept, yet no longer readable (as if its stored body were damaged): applying it raises.
    await dispatch.sql(
        "INSERT INTO carrier_callback (id, carrier, query, headers, body, body_sha256, body_size, received_at,"
        " outcome, delivery_id, offer_id, attempts) SELECT gen_random_uuid(), carrier, query, headers, 'not json',"
        " body_sha256, body_size, received_at, 'pending', delivery_id, offer_id, 0 FROM carrier_callback"
    )
    await post("rider_at_store", 1)
    assert await dispatch.apply_callbacks() == 3
    outcomes = await dispatch.sql("SELECT outcome, attempts, error IS NOT NULL FROM carrier_callback ORDER BY seq")
    assert outcomes == [("applied", 1, False), ("failed", 1, True), ("applied", 1, False)]
    delivery = await dispatch.delivery(order_id)
    assert delivery["status"] == "rider_at_store"
    assert [h["status"] for h in delivery["history"] if h["verdict"] == "applied"] == [
        "rider_assigned", "rider_at_store",
    ]  # fmt: skip
    retries = await dispatch.sql("SELECT key FROM timer WHERE kind = 'callback.apply' AND fired_at IS NULL")
    failed = await dispatch.sql("SELECT id::text FROM carrier_callback WHERE outcome = 'failed'")
    assert retries == [(f"{failed[0][0]}#1",)]
    dispatch.clock.advance(timedelta(seconds=2))  # its retry falls due, and fails again
    await dispatch.fire(1)
    assert await dispatch.sql("SELECT outcome, attempts FROM carrier_callback WHERE outcome <> 'applied'") == [
        ("failed", 2)
    ]


async def test_a_pending_callback_of_a_carrier_no_wire_knows_fails_alone(dispatch: DispatchHarness) -> None:
    """A kept callback whose carrier is no longer known (renamed or removed with callbacks still queued) is recorded
    as failed in a savepoint of its own; it does not stop the rounds, and the others are applied."""
    await dispatch.bind("sf")
    order_id, offer = await _live_offer(dispatch)
    sent = datetime.now(UTC) - timedelta(minutes=3)
    creds = _creds(dispatch.accounts["sf"])
    fields = _fields("sf", offer, "rider_assigned", sent)
    assert (await _post(dispatch, "sf", WIRES["sf"].encode_callback(creds, fields, sent))).status_code == 200
    await dispatch.sql(
        "INSERT INTO carrier_callback (id, carrier, query, headers, body, body_sha256, body_size, received_at,"
        " outcome, delivery_id, offer_id, attempts) SELECT gen_random_uuid(), 'gone', query, headers, body,"
        " body_sha256, body_size, received_at, 'pending', delivery_id, offer_id, 0 FROM carrier_callback"
    )
    assert await dispatch.apply_callbacks() == 2
    outcomes = await dispatch.sql("SELECT carrier, outcome FROM carrier_callback ORDER BY seq")
    assert outcomes == [("sf", "applied"), ("gone", "failed")]
    assert (await dispatch.delivery(order_id))["status"] == "rider_assigned"


async def test_a_round_taken_again_calls_no_carrier_twice(
    dispatch: DispatchHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round without savepoints is undone when one of its callbacks fails, and taken again: a carrier call made in
    it would be made again (a status query; the next carrier's order after one gave up, placed twice). So such a
    round calls no carrier: one holding a confirm-by-query carrier's callback is isolated (a savepoint each) from its
    start, a callback that needs another call stops its round before the call, and the carrier is called once."""
    await dispatch.bind("dada")
    order_id, offer = await _live_offer(dispatch)
    sent: list[str] = []
    call = CarrierClient.call

    async def counted(self: CarrierClient, carrier: str, creds: Credentials, op: Op, canon: Any) -> dict[str, Any]:
        answer = await call(self, carrier, creds, op, canon)
        sent.append(f"{carrier} {op}")  # only once it was sent: a refused call raised before
        return answer

    monkeypatch.setattr(CarrierClient, "call", counted)
    now = datetime.now(UTC)
    body = {"client_id": offer["waybill_id"], "order_id": offer["shop_order_id"], "order_status": 2,
            "update_time": int(now.timestamp()), "cancel_reason": "", "cancel_from": 0}  # fmt: skip
    body["signature"] = hashlib.md5(
        "".join(sorted([str(body["client_id"]), str(body["order_id"]), str(body["update_time"])])).encode()
    ).hexdigest()
    assert (await _post(dispatch, "dada", Message(body=json.dumps(body).encode()))).status_code == 200
    # After it in the same round, one that raises (kept, yet unreadable: read as another carrier's body).
    await dispatch.sql(
        "INSERT INTO carrier_callback (id, carrier, query, headers, body, body_sha256, body_size, received_at,"
        " outcome, delivery_id, offer_id, attempts) SELECT gen_random_uuid(), 'sf', query, headers, 'not json',"
        " body_sha256, body_size, received_at, 'pending', delivery_id, offer_id, 0 FROM carrier_callback"
    )
    assert await dispatch.apply_callbacks() == 2
    assert sent == ["dada query"]
    outcomes = await dispatch.sql("SELECT carrier, outcome FROM carrier_callback ORDER BY seq")
    assert outcomes == [("dada", "duplicate"), ("sf", "failed")]  # the query's answer: still as it was
    assert (await dispatch.delivery(order_id))["status"] == "created"


@pytest.mark.parametrize("carrier", ["dada", "wechat_legacy"])
async def test_a_callback_without_proof_of_its_body_only_prompts_a_query(
    dispatch: DispatchHarness, carrier: str
) -> None:
    """Anyone can compute Dada's callback signature; WeChat's push signature leaves the body out. Claiming
    "delivered" for a delivery the carrier is still placing changes nothing: the carrier's answer is applied."""
    wire = WIRES[carrier]
    await dispatch.bind(carrier)
    order_id, offer = await _live_offer(dispatch)
    now = datetime.now(UTC)

    def lie() -> Message:
        if carrier == "dada":
            body = {"client_id": offer["waybill_id"], "order_id": offer["shop_order_id"], "order_status": 4,
                    "update_time": int(now.timestamp()), "cancel_reason": "", "cancel_from": 0}  # fmt: skip
            body["signature"] = hashlib.md5(  # Dada's scheme: no secret, as an attacker computes it
                "".join(sorted([str(body["client_id"]), str(body["order_id"]), str(body["update_time"])])).encode()
            ).hexdigest()
            return Message(body=json.dumps(body).encode())
        return wire.encode_callback(  # a fresh nonce each time
            _creds(dispatch.accounts[carrier]), _fields(carrier, offer, "delivered", now), dispatch.clock.now()
        )

    # A flood of them, padded to near the body limit, keeps one bounded row and prompts one query.
    for pad in (0, *[60_000] * 20):
        message = lie()
        body = message.body[:-1] + b', "pad": "' + b"x" * pad + b'"}' if pad else message.body
        assert (await _post(dispatch, carrier, Message(params=message.params, body=body))).status_code == 200
    kept = await dispatch.sql("SELECT length(body), body_size FROM carrier_callback")
    assert len(kept) == 1
    assert kept[0][0] <= 2048
    await dispatch.fire()
    delivery = await dispatch.delivery(order_id)
    assert delivery["status"] == "created"
    assert [c["outcome"] for c in await _log(dispatch, carrier)] == ["duplicate"]  # the carrier said: still created


@pytest.mark.parametrize("carrier", list(WIRES))
async def test_a_report_dated_in_the_future_is_refused_and_freezes_nothing(
    dispatch: DispatchHarness, carrier: str
) -> None:
    wire = WIRES[carrier]
    await dispatch.bind(carrier)
    creds = _creds(dispatch.accounts[carrier])
    order_id, offer = await _live_offer(dispatch)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    sealed_at = tomorrow if carrier == "sf" else dispatch.clock.now()  # SF's action time is the push's push_time
    future = wire.encode_callback(creds, _fields(carrier, offer, "rider_assigned", tomorrow), sealed_at)
    refused = await _post(dispatch, carrier, future)
    assert refused.status_code == 400
    assert set(refused.json()) == set(wire.reject)
    assert [c["outcome"] for c in await _log(dispatch, carrier)] == ["rejected"]
    if wire.confirm_by_query:
        return  # what is applied comes from the carrier's answer anyway (above)
    genuine = wire.encode_callback(
        creds, _fields(carrier, offer, "rider_assigned", datetime.now(UTC)), dispatch.clock.now()
    )
    assert (await _post(dispatch, carrier, genuine)).status_code == 200
    await dispatch.fire()
    assert (await dispatch.delivery(order_id))["status"] == "rider_assigned"  # not `stale`


@pytest.mark.parametrize("carrier", list(WIRES))
async def test_a_signed_report_whose_fields_are_not_the_carriers_is_a_4xx(
    dispatch: DispatchHarness, carrier: str
) -> None:
    """Signed and naming a live offer (anyone can sign Dada's), but a time that is no time: refused, never a 500."""
    wire = WIRES[carrier]
    await dispatch.bind(carrier)
    creds = _creds(dispatch.accounts[carrier])
    _, offer = await _live_offer(dispatch)
    # SF's action time is the push time its wire seals; its rider's position is a number just the same.
    field = "rider_lat" if carrier == "sf" else "action_time"
    for value in ("abc", "nan", "1e20", "-1e20") if field == "action_time" else ("abc", "north"):
        fields = _fields(carrier, offer, "rider_assigned", datetime.now(UTC)) | {field: value}
        answer = await _post(dispatch, carrier, wire.encode_callback(creds, fields, dispatch.clock.now()))
        assert answer.status_code == 400, (value, answer.text)
        assert set(answer.json()) == set(wire.reject)


@pytest.mark.parametrize("carrier", list(WIRES))
async def test_a_body_not_in_the_carriers_format_is_a_4xx_in_its_shape(dispatch: DispatchHarness, carrier: str) -> None:
    wire = WIRES[carrier]
    for body, content_type in [
        (b'["x"]', "application/json"),
        (b'"x"', "application/json"),
        (b"42", "application/json"),
        (b"not json", "application/json"),
        (b"\xff\xfe\x00", "application/json"),
        (b"{}", "application/json"),
        (b'["x"]', "application/x-www-form-urlencoded"),
        (b"data=%5B%22x%22%5D", "application/x-www-form-urlencoded"),
        (b"data=%ff", "application/x-www-form-urlencoded"),
        (b"", "application/json"),
    ]:
        answer = await dispatch.client.post(
            f"/v1/carriers/{carrier}/callback", content=body, headers={"Content-Type": content_type}
        )
        assert answer.status_code == 400, (body, answer.text)
        assert set(answer.json()) == set(wire.reject), body
    assert {c["outcome"] for c in await _log(dispatch, carrier)} == {"malformed"}


async def test_refused_callbacks_keep_a_digest_and_prefix_and_are_pruned(dispatch: DispatchHarness) -> None:
    await dispatch.bind("sf")
    order_id, offer = await _live_offer(dispatch)
    padding = "x" * 40_000
    junk = json.dumps({"shop_order_id": offer["shop_order_id"], "padding": padding}).encode()
    refused = await dispatch.client.post("/v1/carriers/sf/callback", params={"sign": "forged"}, content=junk)
    assert refused.status_code == 401
    huge = await dispatch.client.post("/v1/carriers/sf/callback", content=b"{" + b" " * (64 * 1024) + b"}")
    assert huge.status_code == 413
    assert huge.json()["error_code"] == WIRES["sf"].reject["error_code"]
    rows = {c["outcome"]: c for c in await _log(dispatch, "sf")}
    assert rows["rejected"]["body_size"] == len(junk)
    assert rows["rejected"]["body_sha256"] == hashlib.sha256(junk).hexdigest()
    assert len(rows["rejected"]["body"]) == 2048
    assert rows["rejected"]["query"] == {}  # the (forged) signature is not kept
    assert len(rows["too_large"]["body"]) == 0
    genuine = WIRES["sf"].encode_callback(
        _creds(dispatch.accounts["sf"]), _fields("sf", offer, "rider_assigned", datetime.now(UTC)), dispatch.clock.now()
    )
    assert (await _post(dispatch, "sf", genuine)).status_code == 200
    await dispatch.fire()
    assert (await dispatch.delivery(order_id))["status"] == "rider_assigned"
    dispatch.clock.advance(timedelta(days=8))
    await dispatch.fire()
    kept = await _log(dispatch, "sf")
    assert [c["outcome"] for c in kept] == ["applied"]  # verified callbacks stay, whole
    assert kept[0]["body"].encode() == genuine.body


async def test_wechat_pushes_must_be_fresh_and_their_nonces_single_use(dispatch: DispatchHarness) -> None:
    wire = WIRES["wechat_legacy"]
    await dispatch.bind("wechat_legacy")
    account = dispatch.accounts["wechat_legacy"]
    order_id, offer = await _live_offer(dispatch)
    fields = _fields("wechat_legacy", offer, "rider_assigned", datetime.now(UTC))
    stale = wire.encode_callback(_creds(account), fields, dispatch.clock.now() - timedelta(minutes=6))
    assert (await _post(dispatch, "wechat_legacy", stale)).status_code == 401
    push = wire.encode_callback(_creds(account), fields, dispatch.clock.now())
    assert (await _post(dispatch, "wechat_legacy", push)).status_code == 200
    assert (await _post(dispatch, "wechat_legacy", push)).status_code == 200  # WeChat retrying: taken once
    tampered = json.loads(push.body) | {"order_status": wire.emits["delivered"]}
    replayed = Message(params=push.params, body=json.dumps(tampered).encode())
    assert (await _post(dispatch, "wechat_legacy", replayed)).status_code == 401
    await dispatch.fire()
    outcomes = sorted(c["outcome"] for c in await _log(dispatch, "wechat_legacy"))
    assert outcomes == ["duplicate", "rejected", "rejected"]
    assert (await dispatch.delivery(order_id))["status"] == "created"


async def test_a_safe_mode_push_encrypted_by_wechatpy_is_taken_and_a_tampered_one_refused(
    dispatch: DispatchHarness,
) -> None:
    wire = WIRES["wechat_legacy"]
    account = (await dispatch.sim.post("/_sim/accounts", json={"carrier": "wechat_legacy", "safe_mode": True})).json()
    body = {key: account[key] for key in ("app_key", "app_secret", "shop_id", "token", "encoding_aes_key")}
    bound = await dispatch.client.post(
        "/v1/carriers/accounts", json={"store_id": "s-1", "carrier": "wechat_legacy", "brand": "SFTC", **body},
        headers=MERCHANT,
    )  # fmt: skip
    assert bound.status_code == 201, bound.text
    assert bound.json()["safe_mode"] is True
    order_id, offer = await _live_offer(dispatch)
    push = {"ToUserName": "gh_songda", "FromUserName": "o-wechat-delivery", "CreateTime": int(time.time()),
            "MsgType": "event", "Event": "update_waybill_status", "shopid": account["app_key"],
            "shop_order_id": offer["shop_order_id"], "waybill_id": offer["waybill_id"],
            "action_time": int(time.time()), "order_status": 102}  # fmt: skip
    crypto = WeChatCrypto(account["token"], account["encoding_aes_key"], WECHAT_APPID)
    timestamp, nonce = str(int(time.time())), "n0nce1"
    sealed = xmltodict.parse(crypto.encrypt_message(json.dumps(push), nonce, timestamp))["xml"]
    query = {"signature": wechat.push_signature(account["token"], timestamp, nonce), "timestamp": timestamp,
             "nonce": nonce, "encrypt_type": "aes", "msg_signature": sealed["MsgSignature"]}  # fmt: skip
    envelope = json.dumps({"ToUserName": "gh_songda", "Encrypt": sealed["Encrypt"]}).encode()
    taken = await _post(dispatch, "wechat_legacy", Message(params=query, body=envelope))
    assert taken.status_code == 200, taken.text
    assert taken.json() == wire.ack
    flipped = sealed["Encrypt"][:-8] + ("A" if sealed["Encrypt"][-8] != "A" else "B") + sealed["Encrypt"][-7:]
    tampered = json.dumps({"ToUserName": "gh_songda", "Encrypt": flipped}).encode()
    assert (await _post(dispatch, "wechat_legacy", Message(params=query, body=tampered))).status_code == 401
    signed = {"signature": wechat.push_signature(account["token"], timestamp, "n0nce2"), "timestamp": timestamp,
              "nonce": "n0nce2"}  # fmt: skip
    plain = await _post(dispatch, "wechat_legacy", Message(params=signed, body=json.dumps(push).encode()))
    assert plain.status_code == 401  # safe mode on: plain pushes are refused
    assert (await _post(dispatch, "wechat_legacy", Message(params=query, body=envelope))).status_code == 200
    await dispatch.fire()
    outcomes = sorted(c["outcome"] for c in await _log(dispatch, "wechat_legacy"))
    assert outcomes == ["duplicate", "rejected", "rejected"]  # taken once (the simulator still says 101)
    assert (await dispatch.delivery(order_id))["status"] == "created"
    normal = await dispatch.order_ready(note="sim:normal")  # the simulator's own encrypted pushes drive a delivery
    await dispatch.settle(normal, "delivered")


async def test_dadas_own_sdk_queries_cancels_and_tips_by_order_id(dispatch: DispatchHarness) -> None:
    await dispatch.bind("dada")
    account = dispatch.accounts["dada"]
    _, offer = await _live_offer(dispatch)
    signer = DdMakeSign(account["app_key"], account["app_secret"])

    async def call(path: str, business: dict[str, Any]) -> dict[str, Any]:
        request = signer.make_sign({"body": json.dumps(business), "format": "json", "timestamp": str(int(time.time())),
                                    "v": "1.0", "source_id": account["merchant_no"]})  # fmt: skip
        return dict((await dispatch.sim.post(f"/dada{path}", json=request)).json())

    status = await call("/api/order/status/query", {"order_id": offer["shop_order_id"]})
    assert status["code"] == 0, status
    assert status["result"]["statusCode"] == "1"
    tipped = await call("/api/order/addTip", {"order_id": offer["shop_order_id"], "tips": 2.5, "city_code": "010"})
    assert tipped["code"] == 0, tipped
    cancelled = await call(
        "/api/order/formalCancel", {"order_id": offer["shop_order_id"], "cancel_reason_id": 1, "cancel_reason": "x"}
    )
    assert cancelled["code"] == 0, cancelled
    assert cancelled["result"]["deduct_fee"] == 0
    view = (await dispatch.sim.get(f"/_sim/orders/dada/{offer['shop_order_id']}")).json()
    assert view["cancelled"] is True
    assert view["tip_fen"] == 250
    missing = await call("/api/order/status/query", {"order_id": "SD-no-such-order"})
    assert missing["code"] == 2007
