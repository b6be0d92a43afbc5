"""The order service's API contract. Money is integer fen; coordinates are GCJ-02 [lat, lng]."""

from __future__ import annotations

import functools
import re
import uuid
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from services.order.domain import FulfilmentMode
from shared.contract import Count, Fen, PartialUpdate

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")

Lat = Field(ge=-90, le=90)
Lng = Field(ge=-180, le=180)


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def _known_zone(value: str) -> str:
    if value not in _zone_names():
        raise ValueError("unknown IANA time zone")
    return value


def _ring(vertices: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A ring may repeat its first vertex at the end (GeoJSON closes rings so); it is stored open. It needs three
    distinct vertices and an area: a line or a point covers nothing."""
    if len(vertices) > 1 and vertices[0] == vertices[-1]:
        vertices = vertices[:-1]
    if len(set(vertices)) < 3:
        raise ValueError("a polygon has at least 3 distinct [lat, lng] vertices")
    twice_area = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(vertices, [*vertices[1:], vertices[0]], strict=True))
    if twice_area == 0:
        raise ValueError("a polygon's vertices must not all lie on one line")
    return vertices


TimeZoneName = Annotated[str, Field(max_length=64, examples=["Asia/Shanghai"]), AfterValidator(_known_zone)]
Vertex = tuple[Annotated[float, Lat], Annotated[float, Lng]]
RangePolygon = Annotated[
    list[Vertex],
    Field(min_length=3, max_length=200, description="[[lat, lng], ...], closed or not; overrides the radius"),
    AfterValidator(_ring),
]
RangeRadius = Annotated[int, Field(ge=100, le=50_000)]
StoreName = Annotated[str, Field(min_length=1, max_length=64)]
StorePhone = Annotated[str, Field(min_length=5, max_length=20)]
StoreAddress = Annotated[str, Field(min_length=1, max_length=200)]
PrepMinutes = Annotated[int, Field(ge=0, le=600)]
AcceptLimitMinutes = Annotated[int, Field(ge=1, le=24 * 60)]


class OpeningPeriod(BaseModel):
    weekdays: list[int] = Field(default=[1, 2, 3, 4, 5, 6, 7], max_length=7, description="ISO weekdays, Monday = 1")
    open: str = Field(examples=["09:00"])
    close: str = Field(examples=["22:00"], description="At or before `open` means the period runs past midnight")

    @field_validator("open", "close")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("use HH:MM")
        return value

    @field_validator("weekdays")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        if not value or any(d < 1 or d > 7 for d in value):
            raise ValueError("weekdays are 1..7")
        return sorted(set(value))


OpeningHours = Annotated[list[OpeningPeriod], Field(max_length=50, description="Empty: always open")]


class DeliveryTier(BaseModel):
    above_m: Count = Field(description="Trips longer than this add `add_fen`")
    add_fen: Fen


DeliveryTiers = Annotated[list[DeliveryTier], Field(max_length=20)]


class DispatchStrategy(BaseModel):
    kind: Literal["cheapest", "fastest", "preferred", "own_fleet_first", "broadcast"] = "cheapest"
    carriers: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=list, max_length=16, description="Preference order, or the broadcast set"
    )
    broadcast_count: int = Field(default=2, ge=2, le=8)
    max_tip_fen: Fen = 1000
    escalate_after_minutes: int = Field(default=5, ge=1, le=24 * 60)


class StoreFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StoreName
    phone: StorePhone
    address: StoreAddress
    lat: float = Lat
    lng: float = Lng
    timezone: TimeZoneName = "Asia/Shanghai"
    opening_hours: OpeningHours = Field(default_factory=list)
    range_radius_m: RangeRadius | None = 3000
    range_polygon: RangePolygon | None = None
    min_order_fen: Fen = 0
    delivery_base_fen: Fen = 0
    delivery_tiers: DeliveryTiers = Field(default_factory=list)
    free_delivery_above_fen: Fen | None = None
    prep_minutes: PrepMinutes = 15
    fulfilment_modes: list[FulfilmentMode] = Field(
        default=[FulfilmentMode.delivery, FulfilmentMode.pickup], max_length=len(FulfilmentMode)
    )
    dispatch_trigger: Literal["on_accept", "on_ready"] = "on_ready"
    dispatch_strategy: DispatchStrategy = Field(default_factory=DispatchStrategy)
    auto_accept: bool = False
    accept_limit_minutes: AcceptLimitMinutes = 10

    @model_validator(mode="after")
    def _some_range(self) -> StoreFields:
        if not self.fulfilment_modes:
            raise ValueError("a store offers at least one fulfilment mode")
        if self.range_polygon is None and self.range_radius_m is None:
            raise ValueError("give range_radius_m or range_polygon")
        return self


class StoreCreate(StoreFields):
    id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{2,40}$", description="Chosen id, or generated")
    merchant_id: str | None = Field(default=None, description="Ops only: the merchant to create it for")


class StoreUpdate(PartialUpdate):
    """Any subset of the store's fields; `null` clears the range radius, the range polygon or the free-delivery
    threshold, and nothing else."""

    nullable = frozenset({"range_radius_m", "range_polygon", "free_delivery_above_fen"})

    name: StoreName | None = None
    phone: StorePhone | None = None
    address: StoreAddress | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lng: float | None = Field(default=None, ge=-180, le=180)
    timezone: TimeZoneName | None = None
    opening_hours: OpeningHours | None = None
    range_radius_m: RangeRadius | None = None
    range_polygon: RangePolygon | None = None
    min_order_fen: Fen | None = None
    delivery_base_fen: Fen | None = None
    delivery_tiers: DeliveryTiers | None = None
    free_delivery_above_fen: Fen | None = None
    prep_minutes: PrepMinutes | None = None
    fulfilment_modes: list[FulfilmentMode] | None = Field(default=None, max_length=len(FulfilmentMode))
    dispatch_trigger: Literal["on_accept", "on_ready"] | None = None
    dispatch_strategy: DispatchStrategy | None = None
    auto_accept: bool | None = None
    accept_limit_minutes: AcceptLimitMinutes | None = None
    active: bool | None = None


class StoreRead(StoreFields):
    model_config = ConfigDict(from_attributes=True, extra="ignore")

    id: str
    merchant_id: str
    active: bool
    # As stored: a polygon saved under earlier, looser rules still reads.
    range_polygon: list[Vertex] | None = None
    rating: float | None
    rating_count: int
    created_at: AwareDatetime
    updated_at: AwareDatetime


class NearbyStore(BaseModel):
    id: str
    name: str
    address: str
    lat: float
    lng: float
    distance_m: int | None = Field(description="From the point asked about; null when the list is a merchant's own")
    open_now: bool
    rating: float | None
    rating_count: int
    min_order_fen: int
    delivery_fee_fen: int = Field(description="For an order below the free-delivery threshold")
    fulfilment_modes: list[FulfilmentMode]


class NearbyStorePage(BaseModel):
    items: list[NearbyStore]
    total: int
    offset: int
    limit: int


class SkuCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    price_fen: Fen
    stock: Count
    on_shelf: bool = True


class SkuUpdate(PartialUpdate):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    price_fen: Fen | None = None
    stock: Count | None = Field(default=None, description="The new absolute stock")
    on_shelf: bool | None = None


class SkuRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    price_fen: int
    stock: int
    on_shelf: bool
    sold_out: bool
    version: int


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=1000)
    skus: list[SkuCreate] = Field(min_length=1, max_length=50)


class ProductUpdate(PartialUpdate):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=1000)
    on_shelf: bool | None = None


class ProductRead(BaseModel):
    id: uuid.UUID
    store_id: str
    name: str
    description: str
    on_shelf: bool
    sold_out: bool
    delisted: bool
    skus: list[SkuRead]


class ProductPage(BaseModel):
    items: list[ProductRead]
    total: int
    offset: int
    limit: int


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=200, examples=["朝阳区建国路 88 号 2 号楼 1201"])
    lat: float = Lat
    lng: float = Lng


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=32)
    phone: str = Field(pattern=r"^\+?[0-9-]{5,20}$")


class OrderItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku_id: uuid.UUID
    quantity: int = Field(ge=1, le=999)


class OrderCreate(BaseModel):
    """Prices are never taken from the client: the server prices the order from the catalogue."""

    model_config = ConfigDict(extra="forbid")

    store_id: str
    items: list[OrderItemCreate] = Field(min_length=1, max_length=100)
    fulfilment_mode: FulfilmentMode = FulfilmentMode.delivery
    address: Address | None = Field(default=None, description="Required for delivery and express")
    contact: Contact
    note: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _address(self) -> OrderCreate:
        if self.fulfilment_mode is not FulfilmentMode.pickup and self.address is None:
            raise ValueError(f"an address is required for {self.fulfilment_mode.value}")
        return self


class OrderLineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku_id: uuid.UUID
    product_id: uuid.UUID
    name: str
    price_fen: int
    quantity: int
    sku_version: int


class OrderRead(BaseModel):
    id: str
    status: str
    fulfilment_mode: FulfilmentMode
    store_id: str
    merchant_id: str
    customer_id: str
    address: dict[str, Any] | None
    contact: dict[str, Any]
    note: str
    distance_m: int | None
    items: list[OrderLineRead]
    items_fen: int
    delivery_fee_fen: int
    total_fen: int
    refunded_fen: int
    cancel_reason: str | None
    express_carrier: str | None
    express_tracking_no: str | None
    delivery: dict[str, Any] | None
    open_aftersales: int
    placed_at: AwareDatetime
    paid_at: AwareDatetime | None
    accepted_at: AwareDatetime | None
    ready_at: AwareDatetime | None
    delivered_at: AwareDatetime | None
    completed_at: AwareDatetime | None
    cancelled_at: AwareDatetime | None
    updated_at: AwareDatetime
    accept_by: AwareDatetime | None = Field(
        default=None,
        description="A paid order not accepted by then is cancelled and refunded (the store's accept_limit_minutes)",
    )
    auto_complete_by: AwareDatetime | None = Field(
        default=None, description="A delivered or shipped order completes by itself then, unless confirmed before"
    )
    redacted: bool = Field(
        default=False,
        description="Shown through a tracking link: `address.text`, `contact.name` and `contact.phone` are null, "
        "`note` is empty, and the address's `lat`/`lng` are rounded to 0.001° (about 100 m)",
    )


class OrderPage(BaseModel):
    items: list[OrderRead]
    total: int
    offset: int
    limit: int


class StatusChangeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_status: str | None
    to_status: str
    action: str
    actor: str
    at: AwareDatetime


class RejectCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=200)


class CancelCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=200)


class ShipCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    carrier: str = Field(min_length=1, max_length=32, examples=["SF"])
    tracking_no: str = Field(min_length=4, max_length=40, pattern=r"^[A-Za-z0-9-]+$")


class PaymentRead(BaseModel):
    """What the mini-program passes to `wx.requestPayment`, plus our payment's state."""

    order_id: str
    out_trade_no: str
    amount_fen: int
    status: str
    prepay_id: str | None
    pay_params: dict[str, str] | None


class RefundRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    out_refund_no: str
    cause: str
    amount_fen: int
    status: str
    created_at: AwareDatetime
    settled_at: AwareDatetime | None


class ReviewCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store_rating: int = Field(ge=1, le=5)
    rider_rating: int | None = Field(default=None, ge=1, le=5)
    text: str = Field(default="", max_length=500)


class ReplyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reply: str = Field(min_length=1, max_length=500)


class ReviewRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    order_id: str
    store_id: str
    store_rating: int
    rider_rating: int | None
    text: str
    reply: str | None
    replied_at: AwareDatetime | None
    created_at: AwareDatetime


class ReviewPage(BaseModel):
    items: list[ReviewRead]
    total: int
    offset: int
    limit: int
