"""The notify API's bodies and answers."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.notify.consumed import WEBHOOK_EVENT_TYPES
from services.notify.notices import FACTS, NoticeKind

Id64 = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
# A template's keyword key: its type and a number (`thing3`, `character_string1`, `phrase5`).
KEYWORD = re.compile(
    r"^(thing|number|letter|symbol|character_string|time|date|amount|phone_number|car_number|name|phrase)\d{1,2}$"
)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- subscriptions ---------------------------------------------------------------------------------------------


class SubscriptionReport(Body):
    """What `wx.requestSubscribeMessage` answered, as the mini-program got it: `{template_id: status}`."""

    results: dict[Id64, Literal["accept", "reject", "ban", "filter"]] = Field(
        min_length=1, max_length=5, examples=[{"tmpl-rider-accepted": "accept", "tmpl-delivered": "reject"}]
    )


class GrantBalance(BaseModel):
    template_id: str
    open_grants: int = Field(description="One-time grants left to spend")
    long_term: bool = Field(description="A standing long-term grant covers this template")


class SubscriptionAnswer(BaseModel):
    recorded: int = Field(description="Grants added by this report (a report WeChat's push already gave adds none)")
    balances: list[GrantBalance]


# --- inbox -----------------------------------------------------------------------------------------------------


class InboxItemRead(BaseModel):
    id: uuid.UUID
    kind: str
    title: str
    body: str
    order_id: str | None
    store_id: str | None
    created_at: datetime
    read_at: datetime | None


class InboxPage(BaseModel):
    items: list[InboxItemRead]
    unread: int = Field(description="All the caller's unread items, not only this page's")
    limit: int
    offset: int


class ReadAnswer(BaseModel):
    marked: int


# --- templates and notices -------------------------------------------------------------------------------------


class TemplateUpdate(Body):
    """How the merchant tells customers of one notice. `fields` maps each keyword of the WeChat template to a fact
    of the notice; values are fitted to their keyword's rules (thing ≤ 20 characters, phrase ≤ 5 汉字, ...)
    before sending."""

    template_id: Id64 | None = Field(default=None, description="The subscribe-message template (none: SMS only)")
    fields: dict[str, Literal[FACTS]] = Field(  # type: ignore[valid-type]
        default_factory=dict, max_length=10, examples=[{"character_string1": "order_no", "phrase2": "status"}]
    )
    page: Annotated[str, Field(max_length=200, pattern=r"^pages/[A-Za-z0-9_/\-]+$")] | None = None
    sms_fallback: bool = Field(default=False, description="Send an SMS when no grant is left")
    sms_template_id: Annotated[str, Field(max_length=32, pattern=r"^[0-9]+$")] | None = None
    sms_params: list[Literal[FACTS]] = Field(default_factory=list, max_length=10)  # type: ignore[valid-type]

    @field_validator("fields")
    @classmethod
    def _keywords(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not KEYWORD.match(key):
                raise ValueError(f"{key!r} is not a template keyword (thing1, phrase2, character_string3, ...)")
        return value


class TemplateRead(TemplateUpdate):
    model_config = ConfigDict(extra="ignore")

    notice: NoticeKind
    merchant_id: str
    updated_by: str
    updated_at: datetime


class NoticeAttemptRead(BaseModel):
    channel: str
    template_id: str | None
    result: str
    error_code: str | None
    error: str | None
    recipient: str | None = Field(description="The phone number, masked, for an SMS")
    at: datetime


class NoticeRead(BaseModel):
    id: uuid.UUID
    order_id: str
    kind: str
    key: str
    store_id: str
    status: str = Field(description="pending, sending, sent, failed, suppressed or unknown")
    channel: str | None
    detail: str | None
    attempts: list[NoticeAttemptRead]
    created_at: datetime
    sent_at: datetime | None


# --- webhooks --------------------------------------------------------------------------------------------------

EventType = Literal[WEBHOOK_EVENT_TYPES]  # type: ignore[valid-type]


class WebhookCreate(Body):
    url: Annotated[str, Field(min_length=8, max_length=2000, examples=["https://pos.example.com/songda"])]
    description: Annotated[str, Field(max_length=200)] = ""
    event_types: list[EventType] = Field(
        default_factory=list, max_length=len(WEBHOOK_EVENT_TYPES), description="The types to receive; empty: all"
    )


class WebhookUpdate(Body):
    url: Annotated[str, Field(min_length=8, max_length=2000)] | None = None
    description: Annotated[str, Field(max_length=200)] | None = None
    event_types: list[EventType] | None = Field(default=None, max_length=len(WEBHOOK_EVENT_TYPES))
    enabled: bool | None = Field(default=None, description="true re-enables a disabled endpoint")


class WebhookRead(BaseModel):
    id: uuid.UUID
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime


class WebhookSecret(BaseModel):
    secret: str = Field(description="`whsec_` + base64: verify `webhook-signature` with it (Standard Webhooks)")
    previous_valid_until: datetime | None = Field(description="After a rotation, the old secret also signs until then")


class WebhookCreated(WebhookRead):
    secret: str


class WebhookAttemptRead(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    response_excerpt: str | None
    duration_ms: int


class WebhookDeliveryRead(BaseModel):
    id: uuid.UUID
    message_id: str = Field(description="The `webhook-id` header: the same on every attempt and replay")
    event_type: str
    status: str = Field(description="pending, sending, succeeded or failed")
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    history: list[WebhookAttemptRead] = Field(default_factory=list)


class WebhookDeliveryPage(BaseModel):
    items: list[WebhookDeliveryRead]
    limit: int
    offset: int


class ReplayAnswer(BaseModel):
    replayed: int
