"""Shansong (闪送) open platform, v5.

Requests: a form body `clientId, shopId, timestamp, data, sign` with
`sign = MD5(secret + "clientId" + cid + "data" + json + "shopId" + sid + "timestamp" + ts)` upper-case.
Answers: `{status: 200, msg, data}`. Money in yuan; rider positions in BD-09.
Callbacks: the same envelope and signature as requests, as JSON (unverified: the scheme is taken from the request
side); acknowledged with `{"status":200}`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from services.dispatch.carriers.base import (
    CarrierError,
    Credentials,
    Message,
    Op,
    SignatureInvalid,
    Wire,
    compact,
    form_body,
    json_object,
)
from services.dispatch.domain import DeliveryStatus as S


def signature(secret: str, client_id: str, shop_id: str, timestamp: str, data: str) -> str:
    text = f"{secret}clientId{client_id}data{data}shopId{shop_id}timestamp{timestamp}"
    return hashlib.md5(text.encode()).hexdigest().upper()  # noqa: S324  (Shansong's scheme)


def _envelope(creds: Credentials, data: dict[str, Any], now: datetime) -> dict[str, str]:
    fields = {
        "clientId": creds.app_key,
        "shopId": creds.shop_id,
        "timestamp": str(int(now.timestamp() * 1000)),
        "data": compact(data),
    }
    fields["sign"] = signature(
        creds.app_secret, fields["clientId"], fields["shopId"], fields["timestamp"], fields["data"]
    )
    return fields


def _open(fields: dict[str, Any], creds: Credentials) -> dict[str, Any]:
    expected = signature(
        creds.app_secret,
        str(fields.get("clientId", "")),
        str(fields.get("shopId", "")),
        str(fields.get("timestamp", "")),
        str(fields.get("data", "")),
    )
    if fields.get("sign") != expected:
        raise SignatureInvalid("sign does not match")
    return json_object(str(fields.get("data", "")))


class Shansong(Wire):
    name = "shansong"
    title = "闪送"
    brand = "SS"
    bd09 = True
    paths = {
        Op.quote: "/openapi/merchants/v5/orderCalculate",
        Op.place: "/openapi/merchants/v5/orderPlace",
        Op.preview_cancel: "/openapi/merchants/v5/preAbortOrder",
        Op.cancel: "/openapi/merchants/v5/abortOrder",
        Op.add_tip: "/openapi/merchants/v5/addition",
        Op.locate: "/openapi/merchants/v5/courierInfo",
        Op.query: "/openapi/merchants/v5/orderInfo",
    }
    statuses = {
        "20": (S.created, "派单中"),
        "30": (S.rider_assigned, "待取货"),
        "40": (S.delivering, "闪送中"),
        "50": (S.delivered, "已完成"),
        "60": (S.cancelled, "已取消"),
    }
    emits = {"created": "20", "rider_assigned": "30", "delivering": "40", "delivered": "50", "cancelled": "60"}
    order_fields = {
        "shop_order_id": "orderingSourceNo", "sender_name": "sender.fromSenderName",
        "sender_phone": "sender.fromMobile", "sender_address": "sender.fromAddress",
        "sender_lat": "sender.fromLatitude",
        "sender_lng": "sender.fromLongitude", "receiver_name": "receiver.toReceiverName",
        "receiver_phone": "receiver.toMobile", "receiver_address": "receiver.toAddress",
        "receiver_lat": "receiver.toLatitude", "receiver_lng": "receiver.toLongitude",
        "cargo_value_fen": "receiver.insurance", "cargo_weight_g": "receiver.weight", "remark": "receiver.remarks",
        "tip_fen": "additionAmount", "token": "issOrderNo", "waybill_id": "issOrderNo", "reason": "deductReason",
    }  # fmt: skip
    result_fields = {
        "fee_fen": "totalFeeAfterSave", "distance_m": "totalDistance", "eta_seconds": "estimateDeliverySeconds",
        "token": "orderNumber", "waybill_id": "orderNumber", "deduct_fen": "deductAmount", "status": "orderStatus",
        "rider_name": "courierName", "rider_phone": "courierMobile", "rider_lat": "latitude", "rider_lng": "longitude",
        "tip_fen": "additionAmount", "action_time": "statusChangeTime",
    }  # fmt: skip
    callback_fields = {
        "waybill_id": "issOrderNo", "shop_order_id": "orderNo", "status": "status", "reason": "statusDesc",
        "action_time": "statusChangeTime", "rider_id": "courier.courierId", "rider_name": "courier.name",
        "rider_phone": "courier.mobile", "rider_lat": "courier.latitude", "rider_lng": "courier.longitude",
    }  # fmt: skip
    ack = {"status": 200}
    reject = {"status": 401, "msg": "签名验证失败"}
    reject_text = "msg"

    def seal_request(
        self, creds: Credentials, path: str, payload: dict[str, Any], now: datetime, access_token: str
    ) -> Message:
        return Message(
            path=path,
            body=form_body(_envelope(creds, payload, now)),
            content_type="application/x-www-form-urlencoded",
        )

    def request_key(self, message: Message) -> str:
        return message.form().get("clientId", "")

    def open_request(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        return _open(message.form(), creds)

    def seal_result(self, result: dict[str, Any]) -> Message:
        return Message(body=json.dumps({"status": 200, "msg": "OK", "data": result}).encode())

    def seal_error(self, code: str, text: str) -> Message:
        return Message(body=json.dumps({"status": int(code), "msg": text, "data": None}).encode())

    def open_response(self, message: Message) -> dict[str, Any]:
        answer = message.json()
        if answer.get("status") != 200:
            raise CarrierError(self.name, str(answer.get("status")), str(answer.get("msg")))
        return dict(answer.get("data") or {})

    def seal_callback(self, creds: Credentials, fields: dict[str, Any], now: datetime) -> Message:
        return Message(body=json.dumps(_envelope(creds, fields, now)).encode())

    def read_callback(self, message: Message, creds: Credentials | None) -> dict[str, Any]:
        return json_object(str(json_object(message.body).get("data", "")))

    def open_callback(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        return _open(json_object(message.body), creds)
