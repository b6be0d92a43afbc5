"""Dada (达达) open platform.

Requests: a JSON envelope `{app_key, body, format, source_id, timestamp, v, signature}` where `body` is the business
JSON as a string and `signature = MD5(secret + Σ sorted(key + value) + secret)` upper-case over the six fields.
Answers: `{status: success|fail, code, msg, result}`. Money in yuan. Quote (queryDeliverFee) then place
(addAfterQuery with the quote's deliveryNo). There is no cancel preview: the fee follows Dada's rule (free within
1 min of acceptance; ¥2 to the rider from 1 to 15 min; free again if the rider has not reached the store 15 min
after accepting).
Placement names the order `origin_id`; the status query, formalCancel and addTip name it `order_id` (the same value).
Callbacks: JSON with `signature = md5("".join(sorted([client_id, order_id, str(update_time)])))`; no secret, so a
callback proves nothing: it only prompts a status query, whose answer is what gets applied.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from services.dispatch.carriers.base import (
    CarrierError,
    Credentials,
    Message,
    Op,
    SignatureInvalid,
    Wire,
    compact,
    json_object,
)
from services.dispatch.domain import DeliveryStatus as S

SIGNED = ("app_key", "body", "format", "source_id", "timestamp", "v")


def request_signature(secret: str, fields: dict[str, str]) -> str:
    joined = "".join(f"{key}{fields[key]}" for key in sorted(SIGNED))
    return hashlib.md5((secret + joined + secret).encode()).hexdigest().upper()  # noqa: S324  (Dada's scheme)


def callback_signature(client_id: str, order_id: str, update_time: Any) -> str:
    joined = "".join(sorted([str(client_id), str(order_id), str(update_time)]))
    return hashlib.md5(joined.encode()).hexdigest()  # noqa: S324  (Dada's scheme)


class Dada(Wire):
    name = "dada"
    title = "达达"
    brand = "DADA"
    confirm_by_query = True
    paths = {
        Op.quote: "/api/order/queryDeliverFee",
        Op.place: "/api/order/addAfterQuery",
        Op.cancel: "/api/order/formalCancel",
        Op.add_tip: "/api/order/addTip",
        Op.locate: "/api/order/transporter/position",
        Op.query: "/api/order/status/query",
    }
    statuses = {
        "1": (S.created, "待接单"),
        "2": (S.rider_assigned, "待取货"),
        "3": (S.delivering, "配送中"),
        "4": (S.delivered, "已完成"),
        "5": (S.cancelled, "已取消"),
        "7": (S.cancelled, "已过期"),
        "8": (S.rider_assigned, "指派单"),
        "9": (S.returning, "妥投异常之物品返回中"),
        "10": (S.returned, "妥投异常之物品返回完成"),
        "100": (S.rider_at_store, "骑士到店"),
        "1000": (S.failed, "创建达达运单失败"),
    }
    emits = {
        "created": "1", "rider_assigned": "2", "rider_at_store": "100", "delivering": "3", "delivered": "4",
        "returning": "9", "returned": "10", "cancelled": "5", "failed": "1000",
    }  # fmt: skip
    order_fields = {
        "shop_id": "shop_no", "shop_order_id": "origin_id", "cargo_value_fen": "cargo_price",
        "cargo_weight_g": "cargo_weight", "receiver_name": "receiver_name", "receiver_address": "receiver_address",
        "receiver_phone": "receiver_phone", "receiver_lat": "receiver_lat", "receiver_lng": "receiver_lng",
        "sender_lat": "supplier_lat", "sender_lng": "supplier_lng", "remark": "info", "tip_fen": "tips",
        "token": "deliveryNo", "reason_id": "cancel_reason_id", "reason": "cancel_reason",
    }  # fmt: skip
    result_fields = {
        "fee_fen": "fee", "distance_m": "distance", "token": "deliveryNo", "eta_seconds": "estimated_seconds",
        "deduct_fen": "deduct_fee", "waybill_id": "order_id", "status": "statusCode", "rider_name": "transporterName",
        "rider_phone": "transporterPhone", "rider_lat": "transporterLat", "rider_lng": "transporterLng",
        "tip_fen": "tips", "action_time": "updateTime",
    }  # fmt: skip
    op_fields = {op: {"shop_order_id": "order_id"} for op in (Op.query, Op.cancel, Op.add_tip, Op.locate)}
    callback_fields = {
        "waybill_id": "client_id", "shop_order_id": "order_id", "status": "order_status", "reason": "cancel_reason",
        "cancel_from": "cancel_from", "action_time": "update_time", "rider_id": "dm_id", "rider_name": "dm_name",
        "rider_phone": "dm_mobile",
    }  # fmt: skip
    ack = {"status": "ok"}
    reject = {"status": "fail", "code": 2005, "msg": "签名错误"}
    reject_text = "msg"

    def seal_request(
        self, creds: Credentials, path: str, payload: dict[str, Any], now: datetime, access_token: str
    ) -> Message:
        fields = {
            "app_key": creds.app_key,
            "body": compact(payload),
            "format": "json",
            "source_id": creds.merchant_no,
            "timestamp": str(int(now.timestamp())),
            "v": "1.0",
        }
        fields["signature"] = request_signature(creds.app_secret, fields)
        return Message(path=path, body=json.dumps(fields).encode())

    def request_key(self, message: Message) -> str:
        return str(message.json().get("app_key", ""))

    def open_request(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        fields = message.json()
        if any(key not in fields for key in SIGNED) or fields.get("signature") != request_signature(
            creds.app_secret, {key: str(fields[key]) for key in SIGNED}
        ):
            raise SignatureInvalid("signature does not match")
        return dict(json.loads(fields["body"]))

    def seal_result(self, result: dict[str, Any]) -> Message:
        return Message(body=json.dumps({"status": "success", "code": 0, "msg": "成功", "result": result}).encode())

    def seal_error(self, code: str, text: str) -> Message:
        return Message(body=json.dumps({"status": "fail", "code": int(code), "msg": text}).encode())

    def open_response(self, message: Message) -> dict[str, Any]:
        answer = message.json()
        if answer.get("code") != 0:
            raise CarrierError(self.name, str(answer.get("code")), str(answer.get("msg")))
        return dict(answer.get("result") or {})

    def seal_callback(self, creds: Credentials, fields: dict[str, Any], now: datetime) -> Message:
        fields["signature"] = callback_signature(fields["client_id"], fields["order_id"], fields["update_time"])
        return Message(body=json.dumps(fields, ensure_ascii=False).encode())

    def open_callback(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        fields = json_object(message.body)
        if fields.get("signature") != callback_signature(
            fields.get("client_id", ""), fields.get("order_id", ""), fields.get("update_time", "")
        ):
            raise SignatureInvalid("signature does not match")
        return fields

    def cancel_fee_fen(
        self, *, accepted_at: datetime | None, arrived_at: datetime | None, picked_up: bool, now: datetime
    ) -> int:
        if accepted_at is None:
            return 0
        since = now - accepted_at
        if since <= timedelta(minutes=1):
            return 0
        if since > timedelta(minutes=15) and arrived_at is None:
            return 0
        return 200
