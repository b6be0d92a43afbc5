"""The identity routes' API contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from gateway.auth import TokenRead

Login = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=3, max_length=254, pattern=r"^[^\s]+$")
]
Password = Annotated[str, Field(min_length=10, max_length=256)]
TenantId = Annotated[str, Field(min_length=1, max_length=64)]
OpaqueToken = Annotated[str, Field(min_length=1, max_length=256)]


class SignIn(BaseModel):
    login: Login
    # No length rule here: a sign-in only compares, and a wrong length is a wrong password.
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(BaseModel):
    refresh_token: OpaqueToken


class PasswordSet(BaseModel):
    token: OpaqueToken = Field(description="The invitation or reset token the account's admin handed over")
    password: Password


class StaffTokenRead(TokenRead):
    refresh_token: str
    refresh_expires_in: int
    merchant_id: str | None = None
    store_ids: list[str] = Field(default_factory=list)


class StaffInvite(BaseModel):
    login: Login
    display_name: str = Field(min_length=1, max_length=100)
    role: Literal["merchant", "rider", "ops"]
    merchant_id: TenantId | None = Field(
        default=None, description="Ops name the merchant; a merchant's admin invites into its own"
    )
    admin: bool = Field(default=False, description="A merchant's admin (merchant-wide; only ops appoint one)")
    store_ids: list[TenantId] = Field(default_factory=list, max_length=200, description="Empty: every store")


class StaffScope(BaseModel):
    store_ids: list[TenantId] = Field(max_length=200, description="Empty: every store of the merchant")


class StaffRead(BaseModel):
    id: uuid.UUID
    login: str
    display_name: str
    role: str
    merchant_id: str | None
    admin: bool
    store_ids: list[str]
    disabled: bool
    has_password: bool
    created_at: datetime


class StaffInvitation(BaseModel):
    account: StaffRead
    token: str = Field(description="Hand it to the person; it sets their password once at POST /v1/auth/password")
    expires_at: datetime


class OidcExchange(BaseModel):
    token: str = Field(min_length=1, max_length=16384, description="An ID or access token of the merchant's provider")
