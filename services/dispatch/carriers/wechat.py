"""Both WeChat delivery APIs: the legacy 即时配送 (local/business) and its successor 同城配送 (intracity).

Both authenticate calls with the mini-program's `access_token` (fetched from `/cgi-bin/token` and cached by the
client) and answer `{errcode: 0, errmsg, ...}`; `brand` (the account's delivery_id / service_trans_id) names the
fleet behind them.

Legacy: each request also carries `delivery_sign = SHA1(shopid + shop_order_id + AppSecret)`, money is in yuan,
addOrder returns the carrier's own `pickup_code` and `finish_code`. Status pushes arrive as mini-program message
pushes (`Event=update_waybill_status`) signed with the push token the usual WeChat way
(`signature = sha1(sorted([token, timestamp, nonce]))` in the query) and are answered `{"resultcode":0,...}`. That
signature never covers the body, so a push is checked for freshness and a reused nonce (by the intake) and only
prompts a status query, whose answer is applied. In safe mode (安全模式, the account has an EncodingAESKey) the body
is `{"ToUserName", "Encrypt"}`: AES-256-CBC with the key `base64(EncodingAESKey + "=")`, IV its first 16 bytes,
PKCS#7 to 32-byte blocks, over `random(16) + len(4, big-endian) + message + appid`, signed
`msg_signature = sha1(sorted([token, timestamp, nonce, Encrypt]))`; plain pushes are then refused.

Intracity: money in fen; pushes are signed `md5(sorted "k=v" joined by "&" + "&token=" + push token)` lower-case
in the body's `sign`, and answered `{"return_code":0,"return_msg":"OK"}`. 90000 (exception) changes no state.
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
    json_object,
)
from services.dispatch.domain import DeliveryStatus as S
from shared import wechat_push
from shared.wechat_push import encrypt_push, msg_signature, push_signature

TOKEN_EXPIRED = ("40001", "42001")


def delivery_sign(shopid: str, shop_order_id: str, app_secret: str) -> str:
    return hashlib.sha1(f"{shopid}{shop_order_id}{app_secret}".encode()).hexdigest()  # noqa: S324  (WeChat's scheme)


def decrypt_push(encoding_aes_key: str, appid: str, encrypt: str) -> bytes:
    """The message inside a safe-mode push (shared/wechat_push.py), refused as a carrier callback is."""
    try:
        return wechat_push.decrypt_push(encoding_aes_key, appid, encrypt)
    except wechat_push.PushMalformed as error:
        raise MalformedCallback(str(error)) from error
    except wechat_push.PushRefused as error:
        raise SignatureInvalid(str(error)) from error


def intracity_sign(fields: dict[str, Any], token: str) -> str:
    joined = "&".join(f"{key}={fields[key]}" for key in sorted(fields) if key != "sign")
    return hashlib.md5(f"{joined}&token={token}".encode()).hexdigest()  # noqa: S324  (WeChat's scheme)


class _WechatApi(Wire):
    uses_access_token = True

    def seal_result(self, result: dict[str, Any]) -> Message:
        return Message(body=json.dumps({"errcode": 0, "errmsg": "ok", "resultcode": 0, **result}).encode())

    def seal_error(self, code: str, text: str) -> Message:
        return Message(body=json.dumps({"errcode": int(code), "errmsg": text}).encode())

    def open_response(self, message: Message) -> dict[str, Any]:
        answer = message.json()
        code = answer.get("errcode") or answer.get("resultcode") or 0
        if code != 0:
            raise CarrierError(self.name, str(code), str(answer.get("errmsg") or answer.get("resultmsg")))
        return dict(answer)


class WechatLegacy(_WechatApi):
    name = "wechat_legacy"
    title = "微信即时配送"
    brand = ""
    prefix = "/cgi-bin/express/local/business"
    paths = {
        Op.quote: f"{prefix}/order/pre_add",
        Op.place: f"{prefix}/order/add",
        Op.preview_cancel: f"{prefix}/order/precancel",
        Op.cancel: f"{prefix}/order/cancel",
        Op.add_tip: f"{prefix}/order/addtips",
        Op.locate: f"{prefix}/order/get",
        Op.query: f"{prefix}/order/get",
    }
    statuses = {
        "101": (S.created, "等待分配骑手"),
        "102": (S.rider_assigned, "分配骑手成功"),
        "103": (S.cancelled, "商家取消订单"),
        "201": (S.rider_at_store, "骑手到店"),
        "202": (S.picked_up, "骑手取货成功"),
        "203": (S.pickup_failed, "取货失败: 商家取消"),
        "204": (S.pickup_failed, "取货失败: 骑手原因"),
        "205": (S.pickup_failed, "取货失败: 商家原因"),
        "301": (S.delivering, "配送中"),
        "302": (S.delivered, "配送成功"),
        "303": (S.returning, "商家取消, 物品返回中"),
        "304": (S.returning, "收件人联系不上, 物品返回中"),
        "305": (S.returning, "收件人拒收, 物品返回中"),
        "401": (S.returned, "物品返回商家"),
        "501": (S.cancelled, "配送公司系统取消"),
        "502": (S.cancelled, "不可抗力取消"),
    }
    emits = {
        "created": "101", "rider_assigned": "102", "rider_at_store": "201", "picked_up": "202", "delivering": "301",
        "delivered": "302", "pickup_failed": "204", "returning": "304", "returned": "401", "cancelled": "501",
        "force_majeure": "502",
    }  # fmt: skip
    order_fields = {
        "shop_id": "shopid", "shop_order_id": "shop_order_id", "brand": "delivery_id", "token": "delivery_token",
        "waybill_id": "waybill_id", "sender_name": "sender.name", "sender_phone": "sender.phone",
        "sender_address": "sender.address", "sender_lat": "sender.lat", "sender_lng": "sender.lng",
        "receiver_name": "receiver.name", "receiver_phone": "receiver.phone", "receiver_address": "receiver.address",
        "receiver_lat": "receiver.lat", "receiver_lng": "receiver.lng", "cargo_value_fen": "cargo.goods_value",
        "remark": "order_info.note", "tip_fen": "tips", "reason_id": "cancel_reason_id", "reason": "cancel_reason",
    }  # fmt: skip
    result_fields = {
        "fee_fen": "fee", "distance_m": "distance", "eta_seconds": "dispatch_duration", "token": "delivery_token",
        "waybill_id": "waybill_id", "status": "order_status", "pickup_code": "pickup_code",
        "finish_code": "finish_code", "deduct_fen": "deduct_fee", "rider_name": "rider_name",
        "rider_phone": "rider_phone", "rider_lat": "rider_lat", "rider_lng": "rider_lng", "tip_fen": "tips",
        "action_time": "action_time",
    }  # fmt: skip
    callback_fields = {
        "shop_id": "shopid", "shop_order_id": "shop_order_id", "waybill_id": "waybill_id", "status": "order_status",
        "reason": "action_msg", "action_time": "action_time", "rider_name": "agent.name", "rider_phone": "agent.phone",
    }  # fmt: skip
    ack = {"resultcode": 0, "resultmsg": "ok"}
    reject = {"resultcode": -1, "resultmsg": "invalid signature"}
    reject_text = "resultmsg"
    confirm_by_query = True

    def seal_request(
        self, creds: Credentials, path: str, payload: dict[str, Any], now: datetime, access_token: str
    ) -> Message:
        payload["shopid"] = creds.app_key
        payload["delivery_sign"] = delivery_sign(creds.app_key, str(payload.get("shop_order_id", "")), creds.app_secret)
        payload.setdefault("sender", {})["coordinate_type"] = 0
        return Message(path=path, params={"access_token": access_token}, body=json.dumps(payload).encode())

    def request_key(self, message: Message) -> str:
        return str(message.json().get("shopid", ""))

    def open_request(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        body = dict(message.json())
        if body.get("delivery_sign") != delivery_sign(
            creds.app_key, str(body.get("shop_order_id", "")), creds.app_secret
        ):
            raise SignatureInvalid("delivery_sign does not match")
        return body

    def seal_callback(self, creds: Credentials, fields: dict[str, Any], now: datetime) -> Message:
        body = {"ToUserName": "gh_songda", "FromUserName": "o-wechat-delivery", "CreateTime": int(now.timestamp()),
                "MsgType": "event", "Event": "update_waybill_status", **fields, "shopid": creds.app_key}  # fmt: skip
        timestamp, nonce = str(int(now.timestamp())), secrets.token_hex(6)
        params = {"signature": push_signature(creds.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
        text = json.dumps(body, ensure_ascii=False).encode()
        if not creds.aes_key:
            return Message(params=params, body=text)
        encrypt = encrypt_push(creds.aes_key, creds.appid, text)
        params |= {"encrypt_type": "aes", "msg_signature": msg_signature(creds.token, timestamp, nonce, encrypt)}
        return Message(params=params, body=json.dumps({"ToUserName": "gh_songda", "Encrypt": encrypt}).encode())

    @staticmethod
    def sealed(message: Message) -> bool:
        return message.params.get("encrypt_type") == "aes"

    def callback_stamp(self, message: Message) -> tuple[str, str] | None:
        return message.params.get("nonce", ""), message.params.get("timestamp", "")

    def read_callback(self, message: Message, creds: Credentials | None) -> dict[str, Any]:
        if not self.sealed(message):
            return json_object(message.body)
        if creds is None or not creds.aes_key:
            raise SignatureInvalid("a safe-mode push for an account without an EncodingAESKey")
        return json_object(decrypt_push(creds.aes_key, creds.appid, str(json_object(message.body).get("Encrypt", ""))))

    def open_callback(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        params = message.params
        timestamp, nonce = params.get("timestamp", ""), params.get("nonce", "")
        if self.sealed(message):
            encrypt = str(json_object(message.body).get("Encrypt", ""))
            if params.get("msg_signature") != msg_signature(creds.token, timestamp, nonce, encrypt):
                raise SignatureInvalid("msg_signature does not match")
        elif creds.aes_key:
            raise SignatureInvalid("this account takes safe-mode (encrypted) pushes only")
        if params.get("signature") != push_signature(creds.token, timestamp, nonce):
            raise SignatureInvalid("signature does not match")
        return self.read_callback(message, creds)


class WechatIntracity(_WechatApi):
    name = "wechat_intracity"
    title = "微信同城配送"
    brand = ""
    money_in_yuan = False
    prefix = "/cgi-bin/express/intracity"
    paths = {
        Op.quote: f"{prefix}/preaddorder",
        Op.place: f"{prefix}/addorder",
        Op.cancel: f"{prefix}/cancelorder",
        Op.locate: f"{prefix}/queryorder",
        Op.query: f"{prefix}/queryorder",
    }
    statuses = {
        "10000": (S.created, "订单创建成功"),
        "20000": (S.cancelled, "商家取消订单"),
        "20001": (S.cancelled, "配送方取消订单"),
        "30000": (S.rider_assigned, "配送员接单"),
        "40000": (S.rider_at_store, "配送员到店"),
        "50000": (S.delivering, "配送中"),
        "60000": (S.created, "配送员撤单"),
        "70000": (S.delivered, "配送完成"),
        "90000": (None, "配送异常"),
    }
    emits = {
        "created": "10000", "rider_assigned": "30000", "rider_at_store": "40000", "delivering": "50000",
        "delivered": "70000", "cancelled": "20001", "withdrawn": "60000", "exception": "90000",
    }  # fmt: skip
    order_fields = {
        "shop_id": "wx_store_id", "shop_order_id": "store_order_id", "brand": "service_trans_id",
        "waybill_id": "wx_order_id", "receiver_name": "user_name", "receiver_phone": "user_phone",
        "receiver_address": "user_address", "receiver_lat": "user_lat", "receiver_lng": "user_lng",
        "cargo_value_fen": "cargo.cargo_price", "cargo_weight_g": "cargo.cargo_weight", "remark": "order_detail.note",
        "reason_id": "cancel_reason_id", "reason": "cancel_reason",
    }  # fmt: skip
    result_fields = {
        "fee_fen": "est_fee", "distance_m": "distance", "eta_seconds": "expected_seconds", "waybill_id": "wx_order_id",
        "status": "order_status", "pickup_code": "fetch_code", "deduct_fen": "deduct_fee", "rider_name": "rider_name",
        "rider_phone": "rider_phone", "rider_lat": "rider_lat", "rider_lng": "rider_lng",
        "action_time": "status_change_time",
    }  # fmt: skip
    callback_fields = {
        "shop_id": "wx_store_id", "shop_order_id": "store_order_id", "waybill_id": "wx_order_id",
        "status": "order_status", "action_time": "status_change_time", "rider_name": "rider_name",
        "rider_phone": "rider_phone", "rider_lat": "rider_lat", "rider_lng": "rider_lng", "reason": "status_desc",
    }  # fmt: skip
    ack = {"return_code": 0, "return_msg": "OK"}
    reject = {"return_code": -1, "return_msg": "sign error"}
    reject_text = "return_msg"

    def seal_request(
        self, creds: Credentials, path: str, payload: dict[str, Any], now: datetime, access_token: str
    ) -> Message:
        payload["appid"] = creds.app_key
        return Message(path=path, params={"access_token": access_token}, body=json.dumps(payload).encode())

    def request_key(self, message: Message) -> str:
        return str(message.json().get("appid", ""))

    def open_request(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        return dict(message.json())  # authenticated by the access token, checked by the server

    def seal_callback(self, creds: Credentials, fields: dict[str, Any], now: datetime) -> Message:
        body = {**fields, "appid": creds.app_key}
        body["sign"] = intracity_sign(body, creds.token)
        return Message(body=json.dumps(body, ensure_ascii=False).encode())

    def open_callback(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        body = json_object(message.body)
        if body.get("sign") != intracity_sign(body, creds.token):
            raise SignatureInvalid("sign does not match")
        return body
