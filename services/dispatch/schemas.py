"""The dispatch API's contract."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Lat = Field(ge=-90, le=90, description="GCJ-02 latitude")
Lng = Field(ge=-180, le=180, description="GCJ-02 longitude")


class CarrierRead(BaseModel):
    name: str
    title: str
    brand: str
    money: str
    coordinates: str
    operations: list[str]


class AccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store_id: str = Field(min_length=1, max_length=64)
    carrier: str = Field(examples=["dada", "sf", "wechat_legacy"])
    app_key: str = Field(min_length=1, max_length=128, description="app key / dev_id / clientId / appid / shopid")
    app_secret: str = Field(min_length=1, max_length=256, description="Sealed at rest; never returned")
    shop_id: str = Field(default="", max_length=128, description="The store's id at the carrier")
    merchant_no: str = Field(default="", max_length=128, description="Dada source_id, UU openid")
    token: str = Field(default="", max_length=256, description="Push token (WeChat); sealed, never returned")
    brand: str | None = Field(default=None, description="For WeChat: the fleet (DADA, SFTC, SS, MTPS)")
    encoding_aes_key: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9+/]{43})?$",
        description="WeChat legacy: the message push EncodingAESKey, to take safe-mode (encrypted) pushes only; sealed",
    )
    merchant_id: str | None = Field(default=None, description="Ops only: the merchant the account is for")


class AccountRead(BaseModel):
    id: uuid.UUID
    merchant_id: str
    store_id: str
    carrier: str
    brand: str
    app_key: str = Field(description="Masked")
    shop_id: str
    merchant_no: str
    has_token: bool
    safe_mode: bool = Field(description="WeChat pushes are taken encrypted only")
    bound_at: AwareDatetime


class CallbackRead(BaseModel):
    id: uuid.UUID
    carrier: str
    received_at: AwareDatetime
    outcome: str
    error: str | None
    delivery_id: uuid.UUID | None
    attempts: int
    query: dict[str, str]
    headers: dict[str, str]
    body: str = Field(description="Whole when verified; a refused callback keeps only a prefix")
    body_sha256: str
    body_size: int


class CallbackPage(BaseModel):
    items: list[CallbackRead]
    total: int


class OfferRead(BaseModel):
    id: uuid.UUID
    carrier: str
    shop_order_id: str
    waybill_id: str | None
    status: str
    quote_fen: int | None
    fee_fen: int | None
    tip_fen: int
    cancel_fee_fen: int | None
    error: str | None
    placed_at: AwareDatetime


class ChangeRead(BaseModel):
    source: str
    code: str
    status: str | None
    action_time: AwareDatetime
    verdict: str
    reason: str | None


class DeliveryRead(BaseModel):
    id: uuid.UUID
    order_id: str
    merchant_id: str
    store_id: str
    status: str
    carrier: str | None
    waybill_id: str | None
    fee_fen: int | None
    tip_fen: int
    cancel_fee_fen: int
    rider: dict[str, Any] | None
    rider_lat: float | None
    rider_lng: float | None
    eta_at: AwareDatetime | None
    pickup_code: str | None = Field(description="The carrier's own code, when it gives one (WeChat)")
    finish_code: str | None
    reason: str | None
    strategy: dict[str, Any]
    candidates: list[dict[str, Any]] | None = Field(description="Merchant and ops: the ranked quotes")
    offers: list[OfferRead] | None = None
    history: list[ChangeRead] | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    ended_at: AwareDatetime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryRead]
    total: int


class Redispatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str


class TipCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tip_fen: int = Field(gt=0, le=100_000)


class CancelCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="merchant cancelled", max_length=200)


class CancelPreview(BaseModel):
    deduct_fen: int
    offers: dict[str, int]


class Tracking(BaseModel):
    delivery_id: uuid.UUID
    status: str
    rider: dict[str, Any] | None
    lat: float | None
    lng: float | None
    located_at: AwareDatetime | None
    eta_at: AwareDatetime | None


class RiderProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=32)
    phone: str = Field(pattern=r"^\+?[0-9-]{5,20}$")


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Lat
    lng: float = Lng


class RiderRead(BaseModel):
    id: str
    merchant_id: str
    name: str
    phone: str
    online: bool
    lat: float | None
    lng: float | None
    located_at: AwareDatetime | None


class TaskRead(BaseModel):
    delivery_id: uuid.UUID
    order_id: str
    offer: str = Field(description="offered (answer before expires_at) or accepted")
    expires_at: AwareDatetime | None
    status: str
    pickup: dict[str, Any]
    dropoff: dict[str, Any]
    distance_m: int
    tip_fen: int


class HandOver(BaseModel):
    """The customer's finish code, as scanned (QR token) or typed (12 digits), and the attempt's own number: the
    rider app makes a new one for each scan or typing and sends the same one again only to retry that attempt
    (after a timeout, say), which then gets the same answer."""

    model_config = ConfigDict(extra="forbid")

    request_no: str = Field(min_length=6, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    code: str | None = Field(default=None, max_length=32)
    qr_token: str | None = Field(default=None, max_length=80)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lng: float | None = Field(default=None, ge=-180, le=180)
