"""SF同城 (SF intra-city) open platform.

Requests: JSON bodies carrying `dev_id` and `push_time`, signed in the query string as
`sign = base64(md5_hex(json_body + "&" + dev_id + "&" + dev_key))`. Answers: `{error_code: 0, error_msg, result}`.
Money in fen (SF's API counts in 分). precreateorder quotes, createorder places, precancelorder previews the fee.
Callbacks are signed the same way; SF sends separate pushes (rider status 10/12/15, order complete 17, SF cancel 2,
rider recall 22, exception 91/92). The exception sub-codes are unverified: configurable here, not hard truths.
Acknowledged with `{"error_code":0,"error_msg":"success"}`.
"""

from __future__ import annotations

import base64
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
    json_object,
)
from services.dispatch.domain import DeliveryStatus as S


def signature(body: bytes, dev_id: str, dev_key: str) -> str:
    digest = hashlib.md5(body + f"&{dev_id}&{dev_key}".encode()).hexdigest()  # noqa: S324  (SF's scheme)
    return base64.b64encode(digest.encode()).decode()


def _sealed(path: str, creds: Credentials, fields: dict[str, Any], now: datetime) -> Message:
    body = compact({**fields, "dev_id": creds.app_key, "push_time": int(now.timestamp())}).encode()
    return Message(path=path, params={"sign": signature(body, creds.app_key, creds.app_secret)}, body=body)


def _open(message: Message, creds: Credentials) -> dict[str, Any]:
    if message.params.get("sign") != signature(message.body, creds.app_key, creds.app_secret):
        raise SignatureInvalid("sign does not match")
    return json_object(message.body)


class SF(Wire):
    name = "sf"
    title = "顺丰同城"
    brand = "SFTC"
    money_in_yuan = False
    paths = {
        Op.quote: "/open/api/external/precreateorder",
        Op.place: "/open/api/external/createorder",
        Op.preview_cancel: "/open/api/external/precancelorder",
        Op.cancel: "/open/api/external/cancelorder",
        Op.add_tip: "/open/api/external/addordergratuityfee",
        Op.locate: "/open/api/external/riderlatestposition",
        Op.query: "/open/api/external/getorderstatus",
    }
    statuses = {
        "1": (S.created, "订单创建"),
        "10": (S.rider_assigned, "配送员接单"),
        "12": (S.rider_at_store, "配送员到店"),
        "15": (S.delivering, "配送员配送中"),
        "17": (S.delivered, "配送员妥投完单"),
        "2": (S.cancelled, "顺丰原因取消"),
        "22": (S.created, "配送员撤单"),
        "91": (S.pickup_failed, "异常: 取货失败"),
        "92": (S.returning, "异常: 收件人联系不上, 返还中"),
        "93": (S.returned, "异常: 已返还商家"),
    }
    emits = {
        "created": "1", "rider_assigned": "10", "rider_at_store": "12", "delivering": "15", "delivered": "17",
        "cancelled": "2", "withdrawn": "22", "pickup_failed": "91", "returning": "92", "returned": "93",
    }  # fmt: skip
    order_fields = {
        "shop_id": "shop_id", "shop_order_id": "shop_order_id", "sender_name": "shop.shop_name",
        "sender_phone": "shop.shop_phone", "sender_address": "shop.shop_address", "sender_lat": "shop.shop_lat",
        "sender_lng": "shop.shop_lng", "receiver_name": "receive.user_name", "receiver_phone": "receive.user_phone",
        "receiver_address": "receive.user_address", "receiver_lat": "receive.user_lat",
        "receiver_lng": "receive.user_lng", "cargo_value_fen": "order_detail.total_price",
        "cargo_weight_g": "order_detail.weight_gram", "remark": "order_detail.remark", "tip_fen": "gratuity_fee",
        "waybill_id": "order_id", "reason_id": "cancel_code", "reason": "cancel_reason",
    }  # fmt: skip
    result_fields = {
        "fee_fen": "total_price", "distance_m": "delivery_distance_meter", "eta_seconds": "expect_time_seconds",
        "waybill_id": "sf_order_id", "deduct_fen": "deduction_detail.deduction_fee", "status": "order_status",
        "rider_name": "rider_name", "rider_phone": "rider_phone", "rider_lat": "rider_lat", "rider_lng": "rider_lng",
        "tip_fen": "gratuity_fee", "action_time": "push_time",
    }  # fmt: skip
    callback_fields = {
        "waybill_id": "sf_order_id", "shop_order_id": "shop_order_id", "status": "order_status",
        "reason": "status_desc", "action_time": "push_time", "rider_name": "operator_name",
        "rider_phone": "operator_phone", "rider_lat": "rider_lat", "rider_lng": "rider_lng",
    }  # fmt: skip
    ack = {"error_code": 0, "error_msg": "success"}
    reject = {"error_code": 1004, "error_msg": "sign error"}
    reject_text = "error_msg"

    def seal_request(
        self, creds: Credentials, path: str, payload: dict[str, Any], now: datetime, access_token: str
    ) -> Message:
        return _sealed(path, creds, payload, now)

    def request_key(self, message: Message) -> str:
        return str(message.json().get("dev_id", ""))

    def open_request(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        return _open(message, creds)

    def seal_result(self, result: dict[str, Any]) -> Message:
        return Message(body=json.dumps({"error_code": 0, "error_msg": "success", "result": result}).encode())

    def seal_error(self, code: str, text: str) -> Message:
        return Message(body=json.dumps({"error_code": int(code), "error_msg": text}).encode())

    def open_response(self, message: Message) -> dict[str, Any]:
        answer = message.json()
        if answer.get("error_code") != 0:
            raise CarrierError(self.name, str(answer.get("error_code")), str(answer.get("error_msg")))
        return dict(answer.get("result") or {})

    def seal_callback(self, creds: Credentials, fields: dict[str, Any], now: datetime) -> Message:
        return _sealed("", creds, fields, now)

    def open_callback(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        return _open(message, creds)
