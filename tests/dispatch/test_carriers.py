"""Each carrier's wire against the simulator: signing, envelopes, money and coordinates, errors; callbacks with a
wrong signature refused with the carrier's own error body; the signing formulas against answers computed here,
straight from each carrier's documentation."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import httpx
import pytest

from deploy.local.sandboxes.carriers.simulator import ERRORS, credentials
from services.dispatch.carriers import WIRES, dada, meituan, sf, shansong, uu, uu_v3, wechat
from services.dispatch.carriers.base import CarrierError, Credentials, Message, Op
from services.dispatch.carriers.client import CarrierClient
from services.dispatch.carriers.units import bd09_to_gcj02, gcj02_to_bd09, yuan_to_fen
from shared.clock import SystemClock
from shared.geo import distance_m
from tests.dispatch.conftest import MASTER_KEY, OPS, STORE, WECHAT_APPID, DispatchHarness

ORDER = {
    "sender_name": STORE["name"], "sender_phone": STORE["phone"], "sender_address": STORE["address"],
    "sender_lat": STORE["lat"], "sender_lng": STORE["lng"], "receiver_name": "Alice", "receiver_phone": "13900000000",
    "receiver_address": "朝阳区建国路 88 号", "receiver_lat": 39.9150, "receiver_lng": 116.4100,
    "cargo_value_fen": 4230, "remark": "sim:slow_accept", "tip_fen": 0,
}  # fmt: skip


def test_units() -> None:
    assert yuan_to_fen(12.3) == 1230
    assert yuan_to_fen("0.29") == 29
    lat, lng = gcj02_to_bd09(39.9087, 116.3975)
    assert (round(lat, 4), round(lng, 4)) == (39.9150, 116.4039)  # Tiananmen, as Baidu places it
    back = bd09_to_gcj02(lat, lng)
    assert abs(back[0] - 39.9087) < 1e-5
    assert abs(back[1] - 116.3975) < 1e-5


def test_signatures_match_the_documented_formulas() -> None:
    fields = {"app_key": "k", "body": '{"a":1}', "format": "json", "source_id": "73753", "timestamp": "1", "v": "1.0"}
    joined = 'app_keykbody{"a":1}formatjsonsource_id73753timestamp1v1.0'
    assert dada.request_signature("s", fields) == hashlib.md5(f"s{joined}s".encode()).hexdigest().upper()
    assert dada.callback_signature("c1", "o1", 100) == hashlib.md5(b"100c1o1").hexdigest()
    expected = hashlib.md5(b"sclientIdcdata{}shopIdshtimestamp5").hexdigest().upper()
    assert shansong.signature("s", "c", "sh", "5", "{}") == expected
    body = b'{"x":1}'
    assert sf.signature(body, "d", "k") == base64.b64encode(hashlib.md5(b'{"x":1}&d&k').hexdigest().encode()).decode()
    assert meituan.signature("s", {"b": "2", "a": "1", "e": "", "sign": "x"}) == hashlib.sha1(b"sa1b2").hexdigest()
    assert uu.signature("K", {"b": "x", "a": "1"}) == hashlib.md5(b"A=1&B=X&KEY=K").hexdigest().upper()
    assert (
        uu_v3.signature('{"a":"中"}', "S", "1700000000")
        == hashlib.md5('{"a":"中"}S1700000000'.encode()).hexdigest().upper()
    )
    assert wechat.delivery_sign("shop", "o1", "sec") == hashlib.sha1(b"shopo1sec").hexdigest()
    assert wechat.push_signature("t", "2", "1") == hashlib.sha1(b"12t").hexdigest()
    assert wechat.intracity_sign({"b": 2, "a": 1, "sign": "x"}, "tk") == hashlib.md5(b"a=1&b=2&token=tk").hexdigest()


def _creds(carrier: str, account: dict[str, str]) -> Credentials:
    brand = "SFTC" if carrier.startswith("wechat") else ""
    return Credentials(account["app_key"], account["app_secret"], account["shop_id"], account["merchant_no"],
                       account["token"], brand)  # fmt: skip


@pytest.mark.parametrize("carrier", list(WIRES))
async def test_adapter_round_trips_with_the_simulator(dispatch: DispatchHarness, carrier: str) -> None:
    wire = WIRES[carrier]
    account = (await dispatch.sim.post("/_sim/accounts", json={"carrier": carrier})).json()
    creds = _creds(carrier, account)
    base = str(dispatch.sim.base_url).rstrip("/")
    secret = credentials(MASTER_KEY, "wechat", WECHAT_APPID).app_secret
    async with httpx.AsyncClient(timeout=10) as http:
        client = CarrierClient(http, {c: f"{base}/{c}" for c in WIRES}, SystemClock(), wechat_appid=WECHAT_APPID,
                               wechat_secret=secret)  # fmt: skip
        order = {**ORDER, "shop_order_id": f"rt-{carrier}"}
        quote = await client.call(carrier, creds, Op.quote, order)
        assert quote["fee_fen"] == 500 + 100 * (int(quote["distance_m"]) // 1000)
        # The store to the door, whatever coordinates the carrier speaks (BD-09 converted there and back); a carrier
        # that knows the store only by its registered shop id (Meituan) quotes the simulator's default distance.
        trip = distance_m(STORE["lat"], STORE["lng"], 39.9150, 116.4100) if "sender_lat" in wire.order_fields else 3000
        assert abs(quote["distance_m"] - trip) <= 2
        amounts = {"token": quote.get("token"), "fee_fen": quote["fee_fen"], "total_fen": quote.get("total_fen")}
        if wire.place_needs:  # UU: the quote's total_money and need_paymoney go back with the order
            assert quote["total_fen"] == quote["fee_fen"]
            with pytest.raises(CarrierError) as unpriced:
                await client.call(carrier, creds, Op.place, order | {"token": quote.get("token")})
            assert unpriced.value.code == "-2006"
        placed = await client.call(carrier, creds, Op.place, order | amounts)
        assert placed["waybill_id"]
        assert placed["fee_fen"] == quote["fee_fen"]
        if carrier == "wechat_legacy":
            assert placed["pickup_code"]
            assert placed["finish_code"]
        with pytest.raises(CarrierError) as duplicate:
            await client.call(carrier, creds, Op.place, order | amounts)
        assert duplicate.value.code == ERRORS[carrier][0]
        ref = {"shop_order_id": order["shop_order_id"], "waybill_id": placed["waybill_id"]}
        if Op.add_tip in wire.paths:
            assert (await client.call(carrier, creds, Op.add_tip, ref | {"tip_fen": 300}))["tip_fen"] == 300
            with pytest.raises(CarrierError):
                await client.call(carrier, creds, Op.add_tip, ref | {"tip_fen": 300})  # not higher
        if Op.preview_cancel in wire.paths:
            assert (await client.call(carrier, creds, Op.preview_cancel, ref))["deduct_fen"] == 0
        state = await client.call(carrier, creds, Op.query, ref)
        assert wire.update_from(state).status is not None
        assert wire.update_from(state).status.value == "created"
        view = (await dispatch.sim.get(f"/_sim/orders/{carrier}/{order['shop_order_id']}")).json()
        assert view["waybill_id"] == placed["waybill_id"]
        await client.call(carrier, creds, Op.cancel, ref | {"reason_id": 1, "reason": "test"})
        with pytest.raises(CarrierError) as again:
            await client.call(carrier, creds, Op.cancel, ref)
        assert again.value.code == ERRORS[carrier][4]
        wrong = Credentials(creds.app_key, "not-the-secret", creds.shop_id, creds.merchant_no, creds.token, creds.brand)
        if carrier != "wechat_intracity":  # intracity calls are authenticated by the access token alone
            with pytest.raises(CarrierError) as refused:
                await client.call(carrier, wrong, Op.query, ref)
            assert refused.value.code == ERRORS[carrier][2]


@pytest.mark.parametrize("carrier", list(WIRES))
async def test_a_callback_with_a_wrong_signature_is_refused_with_the_carriers_body(
    dispatch: DispatchHarness, carrier: str
) -> None:
    wire = WIRES[carrier]
    await dispatch.bind(carrier)
    creds = _creds(carrier, dispatch.accounts[carrier])
    order_id = await dispatch.order_ready(note="sim:slow_accept")
    await dispatch.fire()
    offer = (await dispatch.delivery(order_id))["offers"][0]
    fields = {"shop_order_id": offer["shop_order_id"], "waybill_id": offer["waybill_id"],
              "status": wire.emits["rider_assigned"], "action_time": int(datetime.now(UTC).timestamp()),
              "shop_id": creds.shop_id}  # fmt: skip
    if carrier == "dada":  # Dada signs callbacks without a secret: a tampered signature is the forgery
        forged = wire.encode_callback(creds, fields, datetime.now(UTC))
        body = json.loads(forged.body) | {"signature": "0" * 32}
        forged = Message(params=forged.params, body=json.dumps(body).encode(), content_type=forged.content_type)
    else:
        impostor = Credentials(creds.app_key, "forged", creds.shop_id, creds.merchant_no, "forged", creds.brand)
        forged = wire.encode_callback(impostor, fields, datetime.now(UTC))
    url = f"/v1/carriers/{carrier}/callback"
    headers = {"Content-Type": forged.content_type}
    refused = await dispatch.client.post(url, params=dict(forged.params), content=forged.body, headers=headers)
    assert refused.status_code == wire.reject_status
    assert refused.json() == wire.reject
    genuine = wire.encode_callback(creds, fields, datetime.now(UTC))
    accepted = await dispatch.client.post(url, params=dict(genuine.params), content=genuine.body, headers=headers)
    assert accepted.status_code == 200
    assert accepted.json() == wire.ack
    await dispatch.fire()
    log = (await dispatch.client.get(f"/v1/carriers/callbacks?carrier={carrier}", headers=OPS)).json()
    outcomes = {item["outcome"]: item for item in log["items"]}
    # Dada and WeChat legacy callbacks only prompt a query: the simulator still says "looking for a rider".
    assert set(outcomes) == {"rejected", "duplicate" if wire.confirm_by_query else "applied"}
    assert all(item["body"] and item["body_sha256"] for item in log["items"])
    assert not {"signature", "sign", "msg_signature", "nonce"} & set(outcomes["rejected"]["query"])
