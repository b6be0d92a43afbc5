"""The redemption service's API contract."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


class Presentation(BaseModel):
    """A code as scanned or typed: the numeric code (spaces allowed) or the QR token."""

    model_config = ConfigDict(extra="forbid")

    code: str | None = Field(default=None, max_length=32, examples=["1234 5678 9012"])
    qr_token: str | None = Field(default=None, max_length=80)
    store_id: str | None = Field(default=None, description="Where it is redeemed; required for merchant staff")
    device_id: str | None = Field(default=None, max_length=64, description="The scanner or phone, for lockouts")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lng: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _one_of(self) -> Presentation:
        if (self.code is None) == (self.qr_token is None):
            raise ValueError("give either code or qr_token")
        return self


class RedemptionCreate(Presentation):
    request_no: str = Field(
        min_length=6, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
        description="Your id of this request: retry with the same one (never a new one) and get the same answer",
    )  # fmt: skip
    count: int = Field(default=1, ge=1, le=100, description="Uses to take (multi-use vouchers)")


class RedemptionRead(BaseModel):
    id: uuid.UUID
    code_id: uuid.UUID
    kind: str
    order_id: str | None
    store_id: str
    count: int
    uses_left: int
    status: str
    redeemed_at: AwareDatetime
    redeemed_by: str
    reversed_at: AwareDatetime | None
    summary: dict[str, Any]


class ReverseCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=200)


class CodeRead(BaseModel):
    id: uuid.UUID
    kind: str
    status: str
    status_reason: str | None
    order_id: str | None
    store_id: str
    title: str
    uses_total: int
    uses_left: int
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    summary: dict[str, Any]
    code: str | None = Field(description="Grouped digits, shown to the code's owner only")
    qr_token: str | None = Field(description="The current rotating token, for the owner only")
    qr_expires_in: int | None = Field(description="Seconds until the token rotates")
    replaces: uuid.UUID | None


class CodePage(BaseModel):
    items: list[CodeRead]
    total: int
    offset: int
    limit: int


class VoucherCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store_id: str
    customer_id: str = Field(description="The customer's id (their openid)")
    title: str = Field(min_length=1, max_length=40, examples=["洗车 10 次卡"])
    uses: int = Field(ge=1, le=100)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime
    merchant_id: str | None = Field(default=None, description="Ops only")


class StatusCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=200)


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    action: str
    principal: str
    role: str
    store_id: str | None
    device_id: str | None
    ip: str | None
    lat: float | None
    lng: float | None
    code_id: uuid.UUID | None
    presented: str
    request_no: str | None
    result: str
    failed: bool
    at: AwareDatetime


class AttemptPage(BaseModel):
    items: list[AttemptRead]
    total: int
    offset: int
    limit: int


class LockoutRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    scope: Literal["store", "device", "principal"]
    key: str
    locked_until: AwareDatetime
    unlocked_by: str | None
