"""UU跑腿 open platform.

Requests: form fields `appid, nonce_str, timestamp, openid` plus the business fields, signed
`sign = MD5(UPPER(sorted "k=v" joined by "&" + "&key=" + appKey))` upper-case. Answers carry their fields at the
top level with `return_code: ok|fail`. Money in yuan; coordinates in BD-09 (UU is Baidu-based).
The quote answers `total_money` (the order's price) and `need_paymoney` (what the balance pays after coupons);
addorder must send them back as `order_price` and `balance_paymoney` with the `price_token`.
Callbacks: a form field `data` holding JSON whose own fields (and `sign`) follow the same scheme; acknowledged with
`{"return_code":"ok"}`. The tip and rider-location paths are unverified. This is UU's openapi v2_0; its v3 (another
envelope and signature) is not modelled: no v3 document or SDK could be found to build it from.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime
from typing import Any

from services.dispatch.carriers.base import (
    CarrierError,
    Credentials,
    MalformedCallback,
    Message,
    Op,
    SignatureInvalid,
    Wire,
    form_body,
    json_object,
)
from services.dispatch.domain import DeliveryStatus as S


def signature(app_key: str, fields: dict[str, Any]) -> str:
    joined = "&".join(f"{key}={fields[key]}" for key in sorted(fields) if key != "sign")
    return hashlib.md5((joined + "&key=" + app_key).upper().encode()).hexdigest().upper()  # noqa: S324  (UU's scheme)


def _signed(creds: Credentials, payload: dict[str, Any], now: datetime) -> dict[str, str]:
    fields = {key: str(value) for key, value in payload.items()}
    fields |= {
        "appid": creds.app_key,
        "nonce_str": secrets.token_hex(8),
        "timestamp": str(int(now.timestamp())),
        "openid": creds.merchant_no,
    }
    fields["sign"] = signature(creds.app_secret, fields)
    return fields


def _open(fields: dict[str, Any], creds: Credentials) -> dict[str, Any]:
    if fields.get("sign") != signature(creds.app_secret, {key: str(value) for key, value in fields.items()}):
        raise SignatureInvalid("sign does not match")
    return {key: value for key, value in fields.items() if key not in ("sign", "appid", "nonce_str", "timestamp")}


class UU(Wire):
    name = "uu"
    title = "UU跑腿"
    brand = "UU"
    bd09 = True
    paths = {
        Op.quote: "/v2_0/getorderprice.ashx",
        Op.place: "/v2_0/addorder.ashx",
        Op.cancel: "/v2_0/cancelorder.ashx",
        Op.add_tip: "/v2_0/payonlinefee.ashx",
        Op.locate: "/v2_0/getdriverlocation.ashx",
        Op.query: "/v2_0/getorderdetail.ashx",
    }
    statuses = {
        "1": (S.created, "下单成功"),
        "3": (S.rider_assigned, "跑男抢单"),
        "4": (S.rider_at_store, "已到达"),
        "5": (S.picked_up, "已取件"),
        "6": (S.delivering, "到达目的地"),
        "10": (S.delivered, "收件人已收货"),
        "-1": (S.cancelled, "订单取消"),
    }
    emits = {
        "created": "1", "rider_assigned": "3", "rider_at_store": "4", "picked_up": "5", "delivering": "6",
        "delivered": "10", "cancelled": "-1",
    }  # fmt: skip
    order_fields = {
        "shop_order_id": "origin_id", "sender_address": "from_address", "sender_lat": "from_lat",
        "sender_lng": "from_lng", "sender_phone": "pubUserMobile", "receiver_name": "receiver",
        "receiver_phone": "receiver_phone", "receiver_address": "to_address", "receiver_lat": "to_lat",
        "receiver_lng": "to_lng", "cargo_value_fen": "goods_price", "cargo_weight_g": "goods_weight",
        "remark": "note", "tip_fen": "onlinefee", "token": "price_token", "waybill_id": "order_code",
        "reason": "reason", "total_fen": "order_price", "fee_fen": "balance_paymoney",
    }  # fmt: skip
    # What addorder needs from the quote besides its price_token (UU refuses the order without them).
    place_needs = ("total_fen", "fee_fen")
    result_fields = {
        "fee_fen": "need_paymoney", "total_fen": "total_money", "distance_m": "distance",
        "eta_seconds": "expectedarrive_seconds",
        "token": "price_token", "waybill_id": "ordercode", "deduct_fen": "deduct_fee", "status": "state",
        "rider_name": "driver_name", "rider_phone": "driver_mobile", "rider_lat": "driver_lastloc_lat",
        "rider_lng": "driver_lastloc_lng", "tip_fen": "onlinefee", "action_time": "state_time",
    }  # fmt: skip
    callback_fields = {
        "waybill_id": "order_code", "shop_order_id": "origin_id", "status": "state", "reason": "state_text",
        "action_time": "timestamp_state", "rider_id": "driver_jobnum", "rider_name": "driver_name",
        "rider_phone": "driver_mobile",
    }  # fmt: skip
    ack = {"return_code": "ok"}
    reject = {"return_code": "fail", "return_msg": "签名错误"}
    reject_text = "return_msg"

    def seal_request(
        self, creds: Credentials, path: str, payload: dict[str, Any], now: datetime, access_token: str
    ) -> Message:
        return Message(
            path=path, body=form_body(_signed(creds, payload, now)), content_type="application/x-www-form-urlencoded"
        )

    def request_key(self, message: Message) -> str:
        return message.form().get("appid", "")

    def open_request(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        return _open(message.form(), creds)

    def seal_result(self, result: dict[str, Any]) -> Message:
        return Message(body=json.dumps({"return_code": "ok", "return_msg": "", **result}).encode())

    def seal_error(self, code: str, text: str) -> Message:
        return Message(body=json.dumps({"return_code": "fail", "return_msg": text, "error_code": code}).encode())

    def open_response(self, message: Message) -> dict[str, Any]:
        answer = message.json()
        if answer.get("return_code") != "ok":
            raise CarrierError(self.name, str(answer.get("error_code", "fail")), str(answer.get("return_msg")))
        return dict(answer)

    def seal_callback(self, creds: Credentials, fields: dict[str, Any], now: datetime) -> Message:
        data = json.dumps(_signed(creds, fields, now), ensure_ascii=False)
        return Message(body=form_body({"data": data}), content_type="application/x-www-form-urlencoded")

    def read_callback(self, message: Message, creds: Credentials | None) -> dict[str, Any]:
        try:
            return json_object(message.form().get("data", ""))
        except UnicodeDecodeError as error:
            raise MalformedCallback("the form is not UTF-8") from error

    def open_callback(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        return _open(self.read_callback(message, creds), creds)
