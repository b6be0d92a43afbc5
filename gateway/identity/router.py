"""The identity routes: sign-in, refresh, sign-out and setting a password (/v1/auth/...), and staff management
(/v1/staff...). Thin: parse, call a use case, answer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query, Request, Response

from gateway.auth import TokenIssuer
from gateway.identity import accounts, sessions
from gateway.identity.passwords import Passwords
from gateway.identity.schemas import (
    PasswordSet,
    RefreshRequest,
    SignIn,
    StaffInvitation,
    StaffInvite,
    StaffRead,
    StaffScope,
    StaffTokenRead,
)
from gateway.identity.sessions import SessionPolicy
from shared import context
from shared.auth import CurrentPrincipal
from shared.clock import AppClock
from shared.db import DbSession


def identity_router(lifespan: Callable[[Any], AbstractAsyncContextManager[None]]) -> APIRouter:
    router = APIRouter(lifespan=lifespan)

    def policy(request: Request) -> SessionPolicy:
        value: SessionPolicy = request.app.state.session_policy
        return value

    def issuer(request: Request) -> TokenIssuer:
        value: TokenIssuer = request.app.state.token_issuer
        return value

    def passwords(request: Request) -> Passwords:
        value: Passwords = request.app.state.passwords
        return value

    def invitation_ttl(request: Request) -> timedelta:
        value: timedelta = request.app.state.invitation_ttl
        return value

    @router.post("/v1/auth/sign-in", tags=["auth"], summary="Sign in with a staff account's login and password")
    async def sign_in(body: SignIn, request: Request, session: DbSession, clock: AppClock) -> StaffTokenRead:
        address = context.client_address.get() or "unknown"
        return await sessions.sign_in(
            session, passwords(request), issuer(request), policy(request), body, address, clock.now()
        )

    @router.post("/v1/auth/refresh", tags=["auth"], summary="Trade a refresh token for new tokens (it rotates)")
    async def refresh(body: RefreshRequest, request: Request, session: DbSession, clock: AppClock) -> StaffTokenRead:
        return await sessions.refresh(session, issuer(request), policy(request), body.refresh_token, clock.now())

    @router.post("/v1/auth/sign-out", tags=["auth"], status_code=204, summary="Revoke a sign-in (its refresh tokens)")
    async def sign_out(body: RefreshRequest, session: DbSession, clock: AppClock) -> Response:
        await sessions.sign_out(session, body.refresh_token, clock.now())
        return Response(status_code=204)

    @router.post("/v1/auth/password", tags=["auth"], summary="Set a password with an invitation or reset token")
    async def set_password(body: PasswordSet, request: Request, session: DbSession, clock: AppClock) -> StaffRead:
        account = await accounts.set_password(session, passwords(request), body.token, body.password, clock.now())
        return accounts.staff_read(account)

    @router.post("/v1/staff", tags=["staff"], status_code=201, summary="Invite a staff member, rider or admin")
    async def invite(
        body: StaffInvite, request: Request, session: DbSession, clock: AppClock, principal: CurrentPrincipal
    ) -> StaffInvitation:
        account, token, expires_at = await accounts.invite(
            session, principal, body, clock.now(), invitation_ttl(request)
        )
        return StaffInvitation(account=accounts.staff_read(account), token=token, expires_at=expires_at)

    @router.get("/v1/staff", tags=["staff"], summary="The staff accounts the caller manages")
    async def list_staff(
        session: DbSession,
        principal: CurrentPrincipal,
        merchant_id: str | None = Query(default=None, min_length=1, max_length=64),
    ) -> list[StaffRead]:
        return [accounts.staff_read(a) for a in await accounts.visible_staff(session, principal, merchant_id)]

    @router.get("/v1/staff/{account_id}", tags=["staff"], summary="One staff account")
    async def get_staff(account_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> StaffRead:
        return accounts.staff_read(await accounts.managed_account(session, principal, account_id, lock=False))

    @router.put("/v1/staff/{account_id}/stores", tags=["staff"], summary="Scope an account to stores (empty: all)")
    async def scope(
        account_id: uuid.UUID, body: StaffScope, session: DbSession, clock: AppClock, principal: CurrentPrincipal
    ) -> StaffRead:
        account = await accounts.scope(session, principal, account_id, body.store_ids, clock.now())
        return accounts.staff_read(account)

    @router.post("/v1/staff/{account_id}/disable", tags=["staff"], summary="Disable an account; revoke its sign-ins")
    async def disable(
        account_id: uuid.UUID, session: DbSession, clock: AppClock, principal: CurrentPrincipal
    ) -> StaffRead:
        account = await accounts.set_disabled(session, principal, account_id, True, clock.now())
        return accounts.staff_read(account)

    @router.post("/v1/staff/{account_id}/enable", tags=["staff"], summary="Enable a disabled account again")
    async def enable(
        account_id: uuid.UUID, session: DbSession, clock: AppClock, principal: CurrentPrincipal
    ) -> StaffRead:
        account = await accounts.set_disabled(session, principal, account_id, False, clock.now())
        return accounts.staff_read(account)

    @router.post(
        "/v1/staff/{account_id}/password-reset",
        tags=["staff"],
        summary="Reset a password: the old one stops working, sign-ins are revoked, a token sets the next",
    )
    async def reset_password(
        account_id: uuid.UUID, request: Request, session: DbSession, clock: AppClock, principal: CurrentPrincipal
    ) -> StaffInvitation:
        account, token, expires_at = await accounts.reset_password(
            session, principal, account_id, clock.now(), invitation_ttl(request)
        )
        return StaffInvitation(account=accounts.staff_read(account), token=token, expires_at=expires_at)

    return router
