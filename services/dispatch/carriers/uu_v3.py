"""UU跑腿 open platform, openapi v3 (the current one; `uu` speaks the older v2_0).

Requests: a JSON body `{openId, timestamp, biz, sign}` with the header `X-App-Id: <appId>`, where `biz` is the
business JSON as a string (compact, Chinese as is) and `sign = MD5(biz + appSecret + timestamp)` upper-case; the
timestamp is in seconds. Answers: `{code, msg, body}` with `code` 0 on success. Money in fen (`needPayMoney`,
`totalMoney`, `orderPrice`, `deductFee`), distances in metres. `order/orderPrice` quotes (`priceToken`),
`order/addOrder` places (`orderCode`), `order/orderDetail`, `order/cancelOrder` and `order/driverTrack` name the order
by `order_code`. Statuses: 1 placed, 3 accepted, 4 arrived, 5 picked up, 6 delivering, 10 done, 11 cancelled,
20 exception.
Taken from UU's own published client (`uupt-mcp-server`) and UU's API reference for it. Unverified, because no
document or client shows them: the status callback, modelled here on the request envelope and signature (as
Shansong's is); its acknowledgement body; the error codes; `originId` on addOrder (our order id, so a retried
placement is refused as a duplicate); the callback's `stateTime`; coordinates (v3 quotes by address text, so the
positions UU answers are taken as BD-09 like v2_0's). v3 has no tip operation that we found: escalation skips it.
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
    json_object,
)
from services.dispatch.domain import DeliveryStatus as S

APP_ID_HEADER = "X-App-Id"
# Fixed values UU's client sends with each operation.
CONSTANTS = {
    "/order/orderPrice": {"sendType": "SEND", "specialChannel": 5},
    "/order/addOrder": {"pushType": "OPEN_ORDER", "payType": "BALANCE_PAY", "specialChannel": 5,
                        "specialType": "NOT_NEED_WARM"},
}  # fmt: skip


def signature(biz: str, app_secret: str, timestamp: str) -> str:
    return hashlib.md5(f"{biz}{app_secret}{timestamp}".encode()).hexdigest().upper()  # noqa: S324  (UU's scheme)


def _envelope(creds: Credentials, payload: dict[str, Any], now: datetime) -> dict[str, Any]:
    biz = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    timestamp = int(now.timestamp())
    return {"openId": creds.merchant_no, "timestamp": timestamp, "biz": biz,
            "sign": signature(biz, creds.app_secret, str(timestamp))}  # fmt: skip


def _open(envelope: dict[str, Any], creds: Credentials) -> dict[str, Any]:
    biz, timestamp = str(envelope.get("biz", "")), str(envelope.get("timestamp", ""))
    if envelope.get("sign") != signature(biz, creds.app_secret, timestamp):
        raise SignatureInvalid("sign does not match")
    if envelope.get("openId") != creds.merchant_no:
        raise SignatureInvalid("openId is not the account's")
    return json_object(biz)


def _app_id(message: Message) -> str:
    return next((value for key, value in message.headers.items() if key.lower() == APP_ID_HEADER.lower()), "")


class UUv3(Wire):
    name = "uu_v3"
    title = "UU跑腿 (openapi v3)"
    brand = "UU"
    money_in_yuan = False
    bd09 = True
    paths = {
        Op.quote: "/order/orderPrice",
        Op.place: "/order/addOrder",
        Op.cancel: "/order/cancelOrder",
        Op.locate: "/order/driverTrack",
        Op.query: "/order/orderDetail",
    }
    statuses = {
        "1": (S.created, "下单成功"),
        "3": (S.rider_assigned, "骑手已接单"),
        "4": (S.rider_at_store, "骑手已到达"),
        "5": (S.picked_up, "骑手已取件"),
        "6": (S.delivering, "骑手送达中"),
        "10": (S.delivered, "已完成"),
        "11": (S.cancelled, "已取消"),
        "20": (None, "异常订单"),
    }
    emits = {
        "created": "1", "rider_assigned": "3", "rider_at_store": "4", "picked_up": "5", "delivering": "6",
        "delivered": "10", "cancelled": "11", "exception": "20",
    }  # fmt: skip
    order_fields = {
        "shop_order_id": "originId", "sender_address": "fromAddress", "receiver_address": "toAddress",
        "receiver_phone": "receiver_phone", "remark": "note", "token": "priceToken", "waybill_id": "order_code",
        "reason": "reason",
    }  # fmt: skip
    result_fields = {
        "fee_fen": "needPayMoney", "total_fen": "totalMoney", "distance_m": "distance", "token": "priceToken",
        "waybill_id": "orderCode", "status": "state", "rider_name": "driverName", "rider_phone": "driverMobile",
        "rider_lat": "latitude", "rider_lng": "longitude", "deduct_fen": "deductFee",
    }  # fmt: skip
    callback_fields = {
        "waybill_id": "orderCode", "shop_order_id": "originId", "status": "state", "reason": "stateText",
        "action_time": "stateTime", "rider_name": "driverName", "rider_phone": "driverMobile",
    }  # fmt: skip
    ack = {"code": 0, "msg": "ok"}
    reject = {"code": -104, "msg": "签名校验失败"}
    reject_text = "msg"

    def seal_request(
        self, creds: Credentials, path: str, payload: dict[str, Any], now: datetime, access_token: str
    ) -> Message:
        envelope = _envelope(creds, {**CONSTANTS.get(path, {}), **payload}, now)
        return Message(path=path, body=json.dumps(envelope).encode(), headers={APP_ID_HEADER: creds.app_key})

    def request_key(self, message: Message) -> str:
        return _app_id(message)

    def open_request(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        return _open(json_object(message.body), creds)

    def seal_result(self, result: dict[str, Any]) -> Message:
        return Message(body=json.dumps({"code": 0, "msg": "ok", "body": result}, ensure_ascii=False).encode())

    def seal_error(self, code: str, text: str) -> Message:
        return Message(body=json.dumps({"code": int(code), "msg": text}, ensure_ascii=False).encode())

    def open_response(self, message: Message) -> dict[str, Any]:
        answer = message.json()
        if answer.get("code") != 0:
            raise CarrierError(self.name, str(answer.get("code")), str(answer.get("msg")))
        return dict(answer.get("body") or {})

    def seal_callback(self, creds: Credentials, fields: dict[str, Any], now: datetime) -> Message:
        return Message(body=json.dumps(_envelope(creds, fields, now)).encode(), headers={APP_ID_HEADER: creds.app_key})

    def read_callback(self, message: Message, creds: Credentials | None) -> dict[str, Any]:
        biz = json_object(message.body).get("biz")
        if not isinstance(biz, str):
            raise MalformedCallback("no biz")
        return json_object(biz)

    def open_callback(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        return _open(json_object(message.body), creds)
