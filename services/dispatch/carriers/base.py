"""The carrier adapter contract, and the one generic machine every carrier's wire format plugs into.

A carrier is described by a `Wire`: its paths per operation, how it signs and wraps a request, how it answers, how
it signs and wraps a status callback, its status table, and the names its fields go by. Fields are mapped through
tables from Songda's canonical keys (`receiver_lat`, `fee_fen`, ...) to the carrier's (`receiver_lat`,
`fee` in yuan, `agent.name`, ...); money and coordinates are converted on the way (`units`).

Both sides of a wire live here: the adapter (`encode_request`, `decode_response`, `decode_callback`) and the
carrier's own side (`decode_request`, `encode_result`, `encode_callback`), which the carrier simulator serves.
The formulas come from each carrier's documentation (see `docs` in the module of each); tests check them against
known answers computed independently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

from services.dispatch.carriers.units import bd09_to_gcj02, fen_to_yuan, gcj02_to_bd09, yuan_to_fen
from services.dispatch.domain import DeliveryStatus


class Op(StrEnum):
    quote = "quote"
    place = "place"
    preview_cancel = "preview_cancel"
    cancel = "cancel"
    add_tip = "add_tip"
    locate = "locate"
    query = "query"


@dataclass(frozen=True)
class Credentials:
    """A store's account at a carrier: app key and secret, the carrier-side shop and merchant ids, and the push
    token some carriers sign callbacks with. `brand` is the fleet behind an aggregator (WeChat's delivery_id)."""

    app_key: str
    app_secret: str
    shop_id: str = ""
    merchant_no: str = ""
    token: str = ""
    brand: str = ""
    # WeChat message push safe mode: the EncodingAESKey, and the mini-program's appid sealed into each push.
    aes_key: str = ""
    appid: str = ""


@dataclass(frozen=True)
class Message:
    """One HTTP message in a carrier's format."""

    path: str = ""
    params: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = "application/json"
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)  # besides Content-Type (UU v3's X-App-Id)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


class CarrierError(Exception):
    """The carrier refused the request; `code` is the carrier's own error code."""

    def __init__(self, carrier: str, code: str, message: str) -> None:
        super().__init__(f"{carrier} error {code}: {message}")
        self.carrier, self.code, self.message = carrier, code, message


class SignatureInvalid(Exception):
    """A request or callback whose signature does not verify (or is missing, or too old)."""


class MalformedCallback(ValueError):
    """A callback that is not in the carrier's format (not JSON, not an object, no order named): answered 400."""


class NotSupported(Exception):
    """The carrier has no such operation (e.g. WeChat intracity has no tip)."""


@dataclass(frozen=True)
class Update:
    """A carrier's status report in Songda's terms: from a callback, or from a query when reconciling."""

    carrier: str
    code: str
    status: DeliveryStatus | None  # None: a fact only (an exception that does not change the state)
    reason: str
    action_time: datetime
    shop_order_id: str = ""
    waybill_id: str = ""
    rider: dict[str, str] | None = None
    rider_lat: float | None = None
    rider_lng: float | None = None


def _get(source: Mapping[str, Any], dotted: str) -> Any:
    value: Any = source
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _put(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


def _epoch(value: Any) -> datetime:
    number = float(value)
    if number > 1e11:  # milliseconds
        number /= 1000
    return datetime.fromtimestamp(number, UTC)


def json_object(raw: bytes | str) -> dict[str, Any]:
    """The JSON object a callback carries; MalformedCallback for anything else (bad JSON, a list, a string)."""
    try:
        value = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedCallback("the body is not JSON") from error
    if not isinstance(value, dict):
        raise MalformedCallback("the body is not a JSON object")
    return value


def form_body(fields: Mapping[str, Any]) -> bytes:
    return urlencode({k: str(v) for k, v in fields.items()}).encode()


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class Wire:
    name: ClassVar[str]
    title: ClassVar[str]
    brand: ClassVar[str]  # the fleet; aggregators (WeChat) take it from the account
    money_in_yuan: ClassVar[bool] = True
    bd09: ClassVar[bool] = False
    uses_access_token: ClassVar[bool] = False
    paths: ClassVar[dict[Op, str]]
    # Carrier status code → (canonical status or None for a fact-only exception, reason).
    statuses: ClassVar[dict[str, tuple[DeliveryStatus | None, str]]]
    # What the simulator sends for each scenario step; a step the carrier has no code for is skipped.
    emits: ClassVar[dict[str, str]]
    order_fields: ClassVar[dict[str, str]]
    result_fields: ClassVar[dict[str, str]]
    callback_fields: ClassVar[dict[str, str]]
    ack: ClassVar[dict[str, Any]]
    reject: ClassVar[dict[str, Any]]
    reject_status: ClassVar[int] = 401
    # The key of the human-readable text in the carrier's error body (`reject`), replaced by the refusal's reason.
    reject_text: ClassVar[str]
    # Operations whose request names the order by another key than `order_fields` does (Dada's query and cancel
    # take `order_id`, its placement `origin_id`).
    op_fields: ClassVar[dict[Op, dict[str, str]]] = {}
    # A callback scheme without a secret proves nothing: its report is only a hint to ask the carrier (query) and
    # apply what the carrier answers.
    confirm_by_query: ClassVar[bool] = False
    # Canonical fields the carrier refuses a placement without (amounts its quote returned).
    place_needs: ClassVar[tuple[str, ...]] = ()
    # Cancel fees, when the carrier has no preview operation (and as the simulator's rule): free before a rider
    # accepts and within a grace period after; then this much. Only Dada's rule is documented (its module overrides
    # this); for the others these are unverified defaults.
    cancel_grace_seconds: ClassVar[int] = 60
    cancel_fee_after_accept_fen: ClassVar[int] = 200

    # --- field tables -----------------------------------------------------------------------------------------

    def to_wire(self, canon: Mapping[str, Any], table: Mapping[str, str]) -> dict[str, Any]:
        values = dict(canon)
        if self.bd09:
            for prefix in ("sender", "receiver", "rider"):
                if values.get(f"{prefix}_lat") is not None and values.get(f"{prefix}_lng") is not None:
                    lat, lng = gcj02_to_bd09(float(values[f"{prefix}_lat"]), float(values[f"{prefix}_lng"]))
                    values[f"{prefix}_lat"], values[f"{prefix}_lng"] = round(lat, 6), round(lng, 6)
        wire: dict[str, Any] = {}
        for key, name in table.items():
            value = values.get(key)
            if value is None:
                continue
            if key.endswith("_fen") and self.money_in_yuan:
                value = fen_to_yuan(int(value))
            _put(wire, name, value)
        return wire

    def from_wire(self, wire: Mapping[str, Any], table: Mapping[str, str]) -> dict[str, Any]:
        canon: dict[str, Any] = {}
        for key, name in table.items():
            value = _get(wire, name)
            if value is None or value == "":
                continue
            if key.endswith("_fen"):
                value = yuan_to_fen(value) if self.money_in_yuan else int(value)
            elif key.endswith(("_lat", "_lng", "_m", "_seconds", "_g")):
                value = float(value)
            canon[key] = value
        if self.bd09:
            for prefix in ("sender", "receiver", "rider"):
                if f"{prefix}_lat" in canon and f"{prefix}_lng" in canon:
                    canon[f"{prefix}_lat"], canon[f"{prefix}_lng"] = bd09_to_gcj02(
                        canon[f"{prefix}_lat"], canon[f"{prefix}_lng"]
                    )
        return canon

    # --- the merchant's side: requests and callbacks ------------------------------------------------------------

    def encode_request(
        self, creds: Credentials, op: Op, canon: Mapping[str, Any], now: datetime, access_token: str = ""
    ) -> Message:
        if op not in self.paths:
            raise NotSupported(f"{self.name} has no {op.value} operation")
        payload = self.to_wire({**canon, "shop_id": creds.shop_id, "brand": creds.brand}, self.request_fields(op))
        return self.seal_request(creds, self.paths[op], payload, now, access_token)

    def request_fields(self, op: Op) -> dict[str, str]:
        return {**self.order_fields, **self.op_fields.get(op, {})}

    def decode_response(self, message: Message) -> dict[str, Any]:
        return self.from_wire(self.open_response(message), self.result_fields)

    def callback_refs(self, fields: Mapping[str, Any]) -> tuple[str, str]:
        """The (shop_order_id, waybill_id) a callback's fields name: read before any check, to find the offer whose
        account must then verify it. MalformedCallback when they name none."""
        canon = self.callback_canon(fields)
        refs = str(canon.get("shop_order_id") or ""), str(canon.get("waybill_id") or "")
        if not any(refs):
            raise MalformedCallback("the callback names no order")
        return refs

    def callback_stamp(self, message: Message) -> tuple[str, str] | None:
        """(nonce, timestamp) for schemes whose signature has them but not the body (WeChat's push): the intake
        refuses a stale one and a reused nonce."""
        return None

    @staticmethod
    def sealed(message: Message) -> bool:
        """Whether the body can only be read with the account's key (WeChat's safe mode)."""
        return False

    def decode_callback(self, message: Message, creds: Credentials, now: datetime) -> Update:
        """Verifies the callback with the account's secrets (signature, and freshness where the scheme has a
        timestamp) and returns its report."""
        return self.report(self.open_callback(message, creds, now))

    def read_callback(self, message: Message, creds: Credentials | None) -> dict[str, Any]:
        """The callback's fields without verifying them (a kept callback, verified when it arrived)."""
        return json_object(message.body)

    def report(self, fields: dict[str, Any]) -> Update:
        canon = self.callback_canon(fields)
        try:
            return self.update_from(canon)
        except (ValueError, TypeError, ArithmeticError, OSError) as error:  # an action time that is no time
            raise MalformedCallback(f"a field is not in {self.name}'s format") from error

    def callback_canon(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A callback's fields under our names; MalformedCallback when one is not what the carrier sends (a
        position or an amount that is not a number): whoever sent it, it is never our server's error."""
        try:
            return self.from_wire(fields, self.callback_fields)
        except (ValueError, TypeError, ArithmeticError) as error:
            raise MalformedCallback(f"a field is not in {self.name}'s format") from error

    def update_from(self, canon: Mapping[str, Any]) -> Update:
        code = str(canon.get("status", ""))
        status, reason = self.statuses.get(code, (None, f"unknown status {code}"))
        rider = {
            key: str(canon[f"rider_{key}"]) for key in ("id", "name", "phone") if canon.get(f"rider_{key}") is not None
        }
        action = canon.get("action_time")
        return Update(
            carrier=self.name,
            code=code,
            status=status,
            reason=str(canon.get("reason") or reason),
            action_time=_epoch(action) if action is not None else datetime.now(UTC),
            shop_order_id=str(canon.get("shop_order_id") or ""),
            waybill_id=str(canon.get("waybill_id") or ""),
            rider=rider or None,
            rider_lat=canon.get("rider_lat"),
            rider_lng=canon.get("rider_lng"),
        )

    # --- the carrier's side (served by the simulator) -----------------------------------------------------------

    def request_key(self, message: Message) -> str:
        """The app key a request claims to come from."""
        raise NotImplementedError

    def decode_request(self, message: Message, creds: Credentials, now: datetime, op: Op) -> dict[str, Any]:
        return self.from_wire(self.open_request(message, creds, now), self.request_fields(op))

    def encode_result(self, canon: Mapping[str, Any]) -> Message:
        return self.seal_result(self.to_wire(canon, self.result_fields))

    def encode_callback(self, creds: Credentials, canon: Mapping[str, Any], now: datetime) -> Message:
        return self.seal_callback(creds, self.to_wire(canon, self.callback_fields), now)

    def ack_message(self) -> Message:
        return Message(body=json.dumps(self.ack).encode())

    def reject_message(self, reason: str | None = None, status: int | None = None) -> Message:
        """The carrier's own error body, with the reason when given (a malformed or unknown callback is not a bad
        signature)."""
        body = dict(self.reject) | ({self.reject_text: reason} if reason else {})
        return Message(body=json.dumps(body, ensure_ascii=False).encode(), status=status or self.reject_status)

    def is_ack(self, message: Message) -> bool:
        try:
            return message.status == 200 and message.json() == self.ack
        except ValueError:
            return False

    # --- per carrier -------------------------------------------------------------------------------------------

    def seal_request(
        self, creds: Credentials, path: str, payload: dict[str, Any], now: datetime, access_token: str
    ) -> Message:
        raise NotImplementedError

    def open_request(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        raise NotImplementedError

    def seal_result(self, result: dict[str, Any]) -> Message:
        raise NotImplementedError

    def seal_error(self, code: str, text: str) -> Message:
        raise NotImplementedError

    def open_response(self, message: Message) -> dict[str, Any]:
        raise NotImplementedError

    def seal_callback(self, creds: Credentials, fields: dict[str, Any], now: datetime) -> Message:
        raise NotImplementedError

    def open_callback(self, message: Message, creds: Credentials, now: datetime) -> dict[str, Any]:
        raise NotImplementedError

    def cancel_fee_fen(
        self, *, accepted_at: datetime | None, arrived_at: datetime | None, picked_up: bool, now: datetime
    ) -> int:
        if accepted_at is None or (now - accepted_at).total_seconds() <= self.cancel_grace_seconds:
            return 0
        return self.cancel_fee_after_accept_fen
