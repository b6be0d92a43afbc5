from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from shared.events.topics import events_topic
from shared.settings import ServiceSettings


class CompensationTier(BaseModel):
    """Orders whose paid total is below `below_fen` (none: any above the previous tier) get `rate_percent` back."""

    below_fen: int | None = Field(default=None, ge=1)
    rate_percent: int = Field(ge=0, le=100)


# Seed 004 (unverified, so a setting): < 100 yuan → 50 %, < 5000 yuan → 30 %, above → 20 %.
DEFAULT_TIERS = [
    CompensationTier(below_fen=10_000, rate_percent=50),
    CompensationTier(below_fen=500_000, rate_percent=30),
    CompensationTier(below_fen=None, rate_percent=20),
]


class AftersalesSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AFTERSALES_", extra="ignore")
    service_name: ClassVar[str] = "aftersales"

    consumes: list[str] = [events_topic("order"), events_topic("dispatch"), events_topic("redemption")]

    # Deadlines, in minutes (README, After-sales: the defaults of AFTERSALES.md's table). Merchants may shorten
    # their own answers and lengthen the customer's; ops extend any one case.
    cancel_answer_minutes: int = Field(default=15, ge=1)
    perishable_answer_minutes: int = Field(default=3 * 60, ge=1)
    standard_answer_minutes: int = Field(default=48 * 60, ge=1)
    customer_confirm_minutes: int = Field(default=48 * 60, ge=1)
    return_shipment_minutes: int = Field(default=7 * 24 * 60, ge=1)
    merchant_receipt_minutes: int = Field(default=10 * 24 * 60, ge=1)
    escalation_minutes: int = Field(default=7 * 24 * 60, ge=1)
    arbitration_evidence_minutes: int = Field(default=48 * 60, ge=1)
    # The longest a merchant may give the customer (or ops may extend a deadline to), in minutes.
    max_deadline_minutes: int = Field(default=30 * 24 * 60, ge=1)

    # Application windows after delivery or pickup: perishables (local food delivery and pickup) and the rest.
    perishable_window_hours: float = Field(default=24.0, gt=0)
    standard_window_hours: float = Field(default=7 * 24.0, gt=0)
    max_cases_per_line: int = Field(default=5, ge=1)

    # Non-delivery compensation, by the order's paid total.
    compensation_tiers: list[CompensationTier] = DEFAULT_TIERS

    # Evidence: images only (JPEG, PNG, WebP, checked by their first bytes), each at most this large (the gateway
    # refuses bodies above GATEWAY_MAX_BODY_BYTES, 1 MiB by default, before they get here).
    evidence_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    evidence_per_case: int = Field(default=20, ge=1)
