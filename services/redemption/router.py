"""Routes for codes (customers show them, merchants issue vouchers) and redemptions (staff and riders redeem)."""

from __future__ import annotations

import io
import uuid
from typing import Annotated, Literal

import segno
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.redemption import codes, issuing, ledger, managing, scanning, views
from services.redemption.errors import CodeNotFound
from services.redemption.lockouts import unlock as unlock_scope  # the route below is `unlock`
from services.redemption.models import Code
from services.redemption.schemas import (
    AttemptPage,
    AttemptRead,
    CodePage,
    CodeRead,
    LockoutRead,
    Presentation,
    RedemptionCreate,
    RedemptionRead,
    ReverseCommand,
    StatusCommand,
    VoucherCreate,
)
from services.redemption.settings import RedemptionSettings
from shared import context
from shared.auth import CurrentPrincipal, Principal, Role, require_roles
from shared.clock import AppClock, Clock
from shared.contract import Offset
from shared.db import DbSession
from shared.errors import PROBLEM_JSON, Forbidden, ValidationFailed
from shared.handover import HEADER, Voucher, VoucherVerifier
from shared.tenancy import covers_store
from shared.vault import Vault

router = APIRouter(tags=["redemption"])

Redeemer = Annotated[Principal, require_roles(Role.merchant, Role.rider, Role.ops)]
Staff = Annotated[Principal, require_roles(Role.merchant, Role.ops)]
Ops = Annotated[Principal, require_roles(Role.ops)]
Limit = Annotated[int, Query(ge=1, le=100)]


def _settings(request: Request) -> RedemptionSettings:
    settings: RedemptionSettings = request.app.state.settings
    return settings


def _vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


CodeVault = Annotated[Vault, Depends(_vault)]


def _voucher(request: Request, clock: Clock) -> Voucher | None:
    """Dispatch's handover voucher, when the request carries one (a rider's handover); forged or expired is 403."""
    token = request.headers.get(HEADER)
    if not token:
        return None
    verifier: VoucherVerifier = request.app.state.vouchers
    return verifier.verify(token, clock.now())


def _presented(request: Request, body: Presentation) -> scanning.Presented:
    # The address the middleware decided: the gateway's word only when the peer is a trusted gateway.
    ip = context.client_address.get()
    return scanning.Presented(body.code, body.qr_token, body.store_id, body.device_id, ip, body.lat, body.lng)


def code_read(code: Code, principal: Principal, clock: Clock, vault: Vault) -> CodeRead:
    owner = principal.role is Role.customer and code.customer_id == principal.sub
    now = clock.now()
    live = owner and code.status == "active"
    return CodeRead(
        id=code.id,
        kind=code.kind,
        status=code.status,
        status_reason=code.status_reason,
        order_id=code.order_id,
        store_id=code.store_id,
        title=code.title,
        uses_total=code.uses_total,
        uses_left=code.uses_left,
        valid_from=code.valid_from,
        valid_until=code.valid_until,
        summary=code.summary,
        code=codes.grouped(code.code) if owner else None,
        qr_token=codes.qr_token(code.id, issuing.qr_secret(vault, code), now) if live else None,
        qr_expires_in=codes.seconds_left(now) if live else None,
        replaces=code.replaces,
    )


# --- redeeming --------------------------------------------------------------------------------------------------


@router.post(
    "/v1/redemptions",
    status_code=201,
    response_model=RedemptionRead,
    summary="Redeem a code (numeric or QR) at a store, or a finish code at the door",
    responses={
        409: {
            "description": "already-redeemed (with when, where, by whom), code-expired, code-revoked, code-frozen, "
            "wrong-store, not-enough-uses, wrong-order (a rider's code that is not the vouched delivery's)",
            "content": {PROBLEM_JSON: {}},
        },
        403: {
            "description": "handover-required: a finish code, redeemed only by a rider with dispatch's handover "
            "voucher (`X-Songda-Handover`)",
            "content": {PROBLEM_JSON: {}},
        },
        404: {"description": "code-not-found", "content": {PROBLEM_JSON: {}}},
        422: {"description": "check-digit-failed, token-not-valid, request-no-reused", "content": {PROBLEM_JSON: {}}},
        423: {"description": "locked-out", "content": {PROBLEM_JSON: {}}},
    },
)
async def redeem(request: Request, clock: AppClock, principal: Redeemer, body: RedemptionCreate) -> Response:
    settings = _settings(request)
    if body.count > settings.max_count_per_request:
        raise ValidationFailed(f"At most {settings.max_count_per_request} uses per request")
    presented, voucher, vault = _presented(request, body), _voucher(request, clock), _vault(request)
    terms = {"request_no": body.request_no, "count": body.count, "voucher": voucher, "clock": clock, "vault": vault}
    outcome = await ledger.verify_at_once(request.app.state.engine, principal, presented, **terms)
    if outcome is None:
        sessions: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
        # As the request's session would: committed before the answer, a refusal (its audit row and stored answer)
        # included; rolled back on an error.
        async with sessions() as session, session.begin():
            outcome = await ledger.verify(session, principal, presented, settings=settings, **terms)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    if outcome.status_code >= 400:
        return JSONResponse(outcome.body, outcome.status_code, headers, media_type=PROBLEM_JSON)
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)


@router.post("/v1/redemptions/preview", summary="What a code would redeem, without redeeming (audited)")
async def preview(
    request: Request, session: DbSession, clock: AppClock, principal: Redeemer, body: Presentation
) -> Response:
    code = await ledger.preview(
        session,
        principal,
        _presented(request, body),
        _voucher(request, clock),
        clock,
        _settings(request),
        _vault(request),
    )
    return JSONResponse(code_read(code, principal, clock, _vault(request)).model_dump(mode="json"))


@router.post("/v1/redemptions/{redemption_id}/reverse", summary="Undo a redemption inside the reversal window")
async def reverse(
    request: Request,
    session: DbSession,
    clock: AppClock,
    principal: Staff,
    redemption_id: uuid.UUID,
    body: ReverseCommand,
) -> RedemptionRead:
    redemption, code = await ledger.reverse(session, principal, redemption_id, body.reason, clock, _settings(request))
    return RedemptionRead.model_validate(ledger.redemption_view(redemption, code))


@router.get("/v1/redemptions/attempts", summary="The audit log: every attempt, successful or not, newest first")
async def attempts(
    session: DbSession,
    principal: Staff,
    store_id: str | None = None,
    failed: bool | None = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> AttemptPage:
    total, rows = await views.attempts(session, principal, store_id=store_id, failed=failed, offset=offset, limit=limit)
    return AttemptPage(items=[AttemptRead.model_validate(r) for r in rows], total=total, offset=offset, limit=limit)


@router.get("/v1/redemptions/lockouts", summary="Scopes locked now (ops)")
async def lockouts(session: DbSession, clock: AppClock, _: Ops) -> list[LockoutRead]:
    return [LockoutRead.model_validate(r) for r in await views.lockouts(session, clock.now())]


@router.post("/v1/redemptions/lockouts/{scope}/{key}/unlock", summary="Lift a lockout; earlier failures stop counting")
async def unlock(
    session: DbSession, clock: AppClock, principal: Ops, scope: Literal["store", "device", "principal"], key: str
) -> LockoutRead:
    return LockoutRead.model_validate(await unlock_scope(session, scope, key, principal, clock))


# --- codes ------------------------------------------------------------------------------------------------------


@router.get("/v1/codes", summary="Codes the caller may see: a customer's own, a merchant's")
async def list_codes(
    session: DbSession,
    clock: AppClock,
    principal: CurrentPrincipal,
    vault: CodeVault,
    order_id: str | None = None,
    status: str | None = None,
    offset: Offset = 0,
    limit: Limit = 20,
) -> CodePage:
    if principal.role is Role.rider:
        raise Forbidden("Riders scan codes; they do not list them")
    total, rows = await views.codes(session, principal, order_id=order_id, status=status, offset=offset, limit=limit)
    return CodePage(
        items=[code_read(c, principal, clock, vault) for c in rows], total=total, offset=offset, limit=limit
    )


@router.post("/v1/codes/vouchers", status_code=201, summary="Issue a multi-use voucher (次卡) valid in a window")
async def issue_voucher(
    session: DbSession, clock: AppClock, principal: Staff, vault: CodeVault, body: VoucherCreate
) -> CodeRead:
    if principal.role is Role.merchant:
        if body.merchant_id not in (None, principal.merchant_id) or not principal.merchant_id:
            raise Forbidden("Merchant staff issue vouchers of their own merchant")
        if not covers_store(principal, principal.merchant_id, body.store_id):
            raise Forbidden(f"This staff account does not work at store {body.store_id}")
        merchant_id = principal.merchant_id
    elif body.merchant_id:
        merchant_id = body.merchant_id
    else:
        raise ValidationFailed("merchant_id is required when ops issue a voucher")
    valid_from = body.valid_from or clock.now()
    if body.valid_until <= valid_from:
        raise ValidationFailed("valid_until must be after valid_from")
    code = await issuing.issue_code(
        session,
        clock,
        vault,
        kind="voucher",
        merchant_id=merchant_id,
        store_id=body.store_id,
        customer_id=body.customer_id,
        title=body.title,
        summary={"title": body.title, "uses": body.uses},
        uses=body.uses,
        valid_from=valid_from,
        valid_until=body.valid_until,
    )
    return code_read(code, principal, clock, vault)


@router.get("/v1/codes/{code_id}", summary="A code; its owner also gets the digits and the current QR token")
async def get_code(
    session: DbSession, clock: AppClock, principal: CurrentPrincipal, vault: CodeVault, code_id: uuid.UUID
) -> CodeRead:
    return code_read(await managing.visible_code(session, principal, code_id), principal, clock, vault)


@router.get(
    "/v1/codes/{code_id}/qr.{kind}",
    summary="The current rotating QR (SVG or PNG) for the code's owner; refresh before `qr_expires_in`",
    response_class=Response,
)
async def qr_image(
    session: DbSession,
    clock: AppClock,
    principal: CurrentPrincipal,
    vault: CodeVault,
    code_id: uuid.UUID,
    kind: Literal["svg", "png"],
) -> Response:
    code = await managing.visible_code(session, principal, code_id)
    if principal.role is not Role.customer or code.customer_id != principal.sub or code.status != "active":
        raise CodeNotFound("Only the owner of an active code gets its QR")
    buffer = io.BytesIO()
    token = codes.qr_token(code.id, issuing.qr_secret(vault, code), clock.now())
    segno.make(token, error="m").save(buffer, kind=kind, scale=6, border=2)
    media = "image/svg+xml" if kind == "svg" else "image/png"
    return Response(buffer.getvalue(), media_type=media, headers={"Cache-Control": "no-store"})


@router.post("/v1/codes/{code_id}/freeze", summary="Freeze a code reported stolen (owner, merchant, ops)")
async def freeze(
    session: DbSession,
    clock: AppClock,
    principal: CurrentPrincipal,
    vault: CodeVault,
    code_id: uuid.UUID,
    body: StatusCommand,
) -> CodeRead:
    return code_read(await managing.freeze(session, principal, code_id, body.reason, clock), principal, clock, vault)


@router.post("/v1/codes/{code_id}/unfreeze", summary="Lift a freeze")
async def unfreeze(
    session: DbSession, clock: AppClock, principal: CurrentPrincipal, vault: CodeVault, code_id: uuid.UUID
) -> CodeRead:
    return code_read(await managing.unfreeze(session, principal, code_id, clock), principal, clock, vault)


@router.post("/v1/codes/{code_id}/revoke", summary="Void a code for good (merchant, ops)")
async def revoke(
    session: DbSession,
    clock: AppClock,
    principal: CurrentPrincipal,
    vault: CodeVault,
    code_id: uuid.UUID,
    body: StatusCommand,
) -> CodeRead:
    return code_read(await managing.revoke(session, principal, code_id, body.reason, clock), principal, clock, vault)


@router.post(
    "/v1/codes/{code_id}/reissue",
    status_code=201,
    summary="Void a stolen code and issue a new one (new digits, new QR secret) with its remaining uses",
)
async def reissue(
    session: DbSession, clock: AppClock, principal: CurrentPrincipal, vault: CodeVault, code_id: uuid.UUID
) -> CodeRead:
    return code_read(await managing.reissue(session, principal, code_id, clock, vault), principal, clock, vault)
