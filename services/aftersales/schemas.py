"""The aftersales API's bodies and answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.contract import INT4_MAX, Fen

Text500 = Annotated[str, Field(max_length=500)]
Id64 = Annotated[str, Field(min_length=1, max_length=64)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApplyType(StrEnum):
    """What a customer may apply for (`non_delivery` cases are opened by the platform)."""

    refund_only = "refund_only"
    return_refund = "return_refund"
    exchange = "exchange"
    cancel_request = "cancel_request"


class LineIn(Body):
    sku_id: Id64 = Field(description="The order line's SKU, or `delivery_fee` for the delivery fee")
    quantity: int = Field(ge=1, le=10_000)


class ApplyCommand(Body):
    order_id: Id64
    type: ApplyType
    lines: list[LineIn] = Field(
        default_factory=list,
        max_length=100,
        description="The lines and quantities; a cancel request covers the whole order",
    )
    amount_fen: Fen | None = Field(default=None, description="What the customer asks; default: all refundable")
    reason_code: Id64
    description: Text500 = ""
    evidence_ids: list[uuid.UUID] = Field(default_factory=list, max_length=9, description="Uploaded images")


class ActionCommand(Body):
    """The body of a party's action; each action reads the fields it needs."""

    note: Text500 = ""
    amount_fen: Fen | None = Field(default=None, description="negotiate: the amount proposed")
    without_return: bool = Field(default=False, description="negotiate: refund without the goods coming back")
    reason_code: Id64 | None = Field(default=None, description="reject: a code from /v1/aftersales/reasons")
    evidence_ids: list[uuid.UUID] = Field(default_factory=list, max_length=9)
    carrier: Id64 | None = Field(default=None, description="ship-return, deliver-exchange: the carrier")
    tracking_no: Id64 | None = None
    collected_by: Id64 | None = Field(default=None, description="ship-return by the store: its rider")


class RulingCommand(Body):
    outcome: Literal["refund", "reject"]
    amount_fen: Fen | None = Field(default=None, description="refund: at most what was asked (default: all of it)")
    note: Text500 = ""


class ExtendCommand(Body):
    deadline_at: AwareDatetime
    note: Text500 = ""


class ClaimSettlement(Body):
    recovered_fen: Fen
    note: Text500 = ""


Minutes = Annotated[int, Field(ge=1, le=INT4_MAX)]
Hours = Annotated[float, Field(gt=0, le=24 * 366)]


class PolicyUpdate(Body):
    """A merchant's overrides; a field left out (or null) keeps the platform default."""

    cancel_answer_minutes: Minutes | None = None
    perishable_answer_minutes: Minutes | None = None
    standard_answer_minutes: Minutes | None = None
    merchant_receipt_minutes: Minutes | None = None
    customer_confirm_minutes: Minutes | None = None
    return_shipment_minutes: Minutes | None = None
    escalation_minutes: Minutes | None = None
    perishable_window_hours: Hours | None = None
    standard_window_hours: Hours | None = None
    perishable: bool | None = Field(default=None, description="Sells perishables (default: by fulfilment mode)")


class CaseLineRead(BaseModel):
    sku_id: str
    quantity: int
    name: str | None = Field(default=None, description="The order line's name (none for the delivery fee)")


class EvidenceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    case_id: str | None
    side: str
    content_type: str
    size_bytes: int
    sha256: str
    created_at: datetime


class CompensationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    party: str
    basis_fen: int
    rate_percent: int
    amount_fen: int
    settled_fen: int | None
    status: str
    reason: str
    created_at: datetime
    settled_at: datetime | None


class CaseRead(BaseModel):
    id: str
    order_id: str
    store_id: str
    type: str
    state: str
    reason_code: str
    description: str
    asked_fen: int
    agreed_fen: int | None
    refunded_fen: int | None = Field(description="What the payment provider actually refunded")
    refund_attempt: int
    proposal: dict[str, Any] | None
    reject_reason_code: str | None
    return_shipment: dict[str, Any] | None
    reship_shipment: dict[str, Any] | None
    ruling: dict[str, Any] | None
    deadline: str | None = Field(description="The running deadline's name")
    deadline_at: datetime | None = Field(description="When it moves the case by itself")
    next_actions: dict[str, list[str]] = Field(description="What each side may do now")
    lines: list[CaseLineRead]
    evidence: list[EvidenceRead]
    compensations: list[CompensationRead]
    delivery_proofs: list[dict[str, Any]] = Field(description="Handover and carrier reports (merchants and ops)")
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


class CasePage(BaseModel):
    items: list[CaseRead]
    total: int
    offset: int
    limit: int


class CaseChangeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    action: str
    from_state: str | None
    to_state: str
    actor: str
    side: str
    note: str
    data: dict[str, Any]
    at: datetime


class ReasonRead(BaseModel):
    code: str
    title: str
    types: list[str]
    evidence: str
