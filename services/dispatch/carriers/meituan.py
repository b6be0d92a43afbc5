"""Meituan 配送 (Meituan delivery) open platform.

Requests: form fields `appkey, timestamp, version` plus the business fields, signed
`sign = sha1(secret + Σ sorted(key + value) over non-empty fields)` lower-case; the receiver refuses a timestamp
more than 10 minutes off. Answers: `{code: 0, message, data}`. Money in yuan. Callbacks use the same form and
scheme and are acknowledged with `{"code":0}`. Status 0 (scheduling) is unverified.
"""

from __future__ import annotations

import hashlib
import json
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
)
from services.dispatch.domain import DeliveryStatus as S

MAX_SKEW_SECONDS = 600


def signature(secret: str, fields: dict[str, Any]) -> str:
    joined = "".join(f"{key}{fields[key]}" for key in sorted(fields) if key != "sign" and str(fields[key]) != "")
    return hashlib.sha1((secret + joined).encode()).hexdigest()  # noqa: S324  (Meituan's scheme)


def _flat(payload: dict[str, Any]) -> dict[str, str]:
    return {key: json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else str(value)
            for key, value in payload.items()}  # fmt: skip


def _sealed(path: str, creds: Credentials, payload: dict[str, Any], now: datetime) -> Message:
    fields = {**_flat(payload), "appkey": creds.app_key, "timestamp": str(int(now.timestamp())), "version": "1.0"}
    fields["sign"] = signature(creds.app_secret, fields)
    return Message(path=path, body=form_body(fields), content_type="application/x-www-form-urlencoded")


def _form(message: Message) -> dict[str, str]:
    try:
        return message.form()
    except UnicodeDecodeError as error:
        raise MalformedCallback("the form is not UTF-8") from error


def _open(message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
    fields = _form(message)
    if fields.get("sign") != signature(creds.app_secret, fields):
        raise SignatureInvalid("sign does not match")
    stamp = str(fields.get("timestamp", ""))
    if not stamp.isdigit() or abs(now.timestamp() - int(stamp)) > MAX_SKEW_SECONDS:
        raise SignatureInvalid("timestamp too far from now")
    return {key: value for key, value in fields.items() if key not in ("sign", "appkey", "timestamp", "version")}


class Meituan(Wire):
    name = "meituan"
    title = "美团配送"
    brand = "MTPS"
    paths = {
        Op.quote: "/api/order/preCreateByShop",
        Op.place: "/api/order/createByShop",
        Op.cancel: "/api/order/delete",
        Op.add_tip: "/api/order/addTip",
        Op.locate: "/api/order/rider/location",
        Op.query: "/api/order/status/query",
    }
    statuses = {
        "0": (S.created, "待调度"),
        "20": (S.rider_assigned, "已接单"),
        "30": (S.picked_up, "已取货"),
        "50": (S.delivered, "已送达"),
        "99": (S.cancelled, "已取消"),
    }
    emits = {"created": "0", "rider_assigned": "20", "picked_up": "30", "delivered": "50", "cancelled": "99"}
    order_fields = {
        "shop_id": "shop_id", "shop_order_id": "order_id", "receiver_name": "receiver_name",
        "receiver_phone": "receiver_phone", "receiver_address": "receiver_address", "receiver_lat": "receiver_lat",
        "receiver_lng": "receiver_lng", "cargo_value_fen": "goods_value", "cargo_weight_g": "goods_weight",
        "remark": "note", "tip_fen": "tip_amount", "waybill_id": "mt_peisong_id", "reason_id": "cancel_reason_id",
        "reason": "cancel_reason",
    }  # fmt: skip
    result_fields = {
        "fee_fen": "delivery_fee", "distance_m": "delivery_distance", "eta_seconds": "predict_delivery_seconds",
        "waybill_id": "mt_peisong_id", "status": "status", "rider_name": "courier_name",
        "rider_phone": "courier_phone", "rider_lat": "lat", "rider_lng": "lng", "tip_fen": "tip_amount",
        "action_time": "operate_time", "deduct_fen": "deduct_fee",
    }  # fmt: skip
    callback_fields = {
        "waybill_id": "mt_peisong_id", "shop_order_id": "order_id", "status": "status", "reason": "cancel_reason",
        "action_time": "operate_time", "rider_name": "courier_name", "rider_phone": "courier_phone",
    }  # fmt: skip
    ack = {"code": 0}
    reject = {"code": 1, "message": "签名验证失败"}
    reject_text = "message"

    def seal_request(
        self, creds: Credentials, path: str, payload: dict[str, Any], now: datetime, access_token: str
    ) -> Message:
        return _sealed(path, creds, payload, now)

    def request_key(self, message: Message) -> str:
        return message.form().get("appkey", "")

    def open_request(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        return _open(message, creds, now)

    def seal_result(self, result: dict[str, Any]) -> Message:
        return Message(body=json.dumps({"code": 0, "message": "成功", "data": result}).encode())

    def seal_error(self, code: str, text: str) -> Message:
        return Message(body=json.dumps({"code": int(code), "message": text}).encode())

    def open_response(self, message: Message) -> dict[str, Any]:
        answer = message.json()
        if answer.get("code") != 0:
            raise CarrierError(self.name, str(answer.get("code")), str(answer.get("message")))
        return dict(answer.get("data") or {})

    def seal_callback(self, creds: Credentials, fields: dict[str, Any], now: datetime) -> Message:
        return _sealed("", creds, fields, now)

    def read_callback(self, message: Message, creds: Credentials | None) -> dict[str, Any]:
        return _form(message)

    def open_callback(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        return _open(message, creds, now)
