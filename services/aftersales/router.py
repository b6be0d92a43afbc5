"""Routes of the after-sales API (`/v1/aftersales`, through the gateway). State changes are POST sub-resources of
the case, one per action; what each side may do next is part of every case read."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from sqlalchemy import and_, func, select

from services.aftersales import compensation, evidence, policy
from services.aftersales.cases import Cases, may_see
from services.aftersales.domain import REASONS, REJECT_REASONS, Action, CaseType, State, next_actions
from services.aftersales.errors import CaseNotFound
from services.aftersales.models import (
    AftersalesCase,
    CaseChange,
    CaseLine,
    Compensation,
    EvidenceFile,
    OrderViewLine,
)
from services.aftersales.schemas import (
    ActionCommand,
    ApplyCommand,
    CaseChangeRead,
    CaseLineRead,
    CasePage,
    CaseRead,
    ClaimSettlement,
    CompensationRead,
    EvidenceRead,
    ExtendCommand,
    PolicyUpdate,
    ReasonRead,
    RulingCommand,
)
from shared.auth import Principal, Role, require_roles
from shared.clock import AppClock
from shared.contract import INT4_MAX, Offset
from shared.db import DbSession
from shared.errors import Forbidden, NotFound, ValidationFailed
from shared.tenancy import covers_merchant, covers_store, require_tenant, store_conditions

router = APIRouter(prefix="/v1/aftersales", tags=["aftersales"])

Caller = Annotated[Principal, require_roles(Role.customer, Role.merchant, Role.ops, Role.service)]
Ops = Annotated[Principal, require_roles(Role.ops)]
CaseOrder = Literal["newest", "deadline"]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=8, max_length=64,
           description="Retries with the same key return the first answer"),
]  # fmt: skip
# The URL name of each party's action.
ACTIONS = {
    "approve": Action.approve,
    "reject": Action.reject,
    "negotiate": Action.negotiate,
    "confirm-receipt": Action.confirm_receipt,
    "deliver-exchange": Action.deliver_exchange,
    "accept": Action.accept_proposal,
    "decline": Action.decline_proposal,
    "ship-return": Action.ship_return,
    "escalate": Action.escalate,
    "cancel": Action.cancel,
    "retry-refund": Action.retry_refund,
}


def _cases(request: Request) -> Cases:
    cases: Cases = request.app.state.cases
    return cases


async def case_reads(session: DbSession, principal: Principal, rows: Sequence[AftersalesCase]) -> list[CaseRead]:
    """The cases as the API shows them to this caller; their lines (named as the order has them), evidence and
    compensations in three queries."""
    ids = [case.id for case in rows]
    lines: dict[str, list[CaseLineRead]] = {i: [] for i in ids}
    files: dict[str, list[EvidenceFile]] = {i: [] for i in ids}
    comps: dict[str, list[Compensation]] = {i: [] for i in ids}
    named_lines = await session.execute(
        select(CaseLine, OrderViewLine.name)
        .outerjoin(OrderViewLine, and_(OrderViewLine.order_id == CaseLine.order_id,
                                       OrderViewLine.sku_id == CaseLine.sku_id))
        .where(CaseLine.case_id.in_(ids)).order_by(CaseLine.sku_id)
    )  # fmt: skip
    for line, name in named_lines:
        lines[line.case_id].append(CaseLineRead(sku_id=line.sku_id, quantity=line.quantity, name=name))
    for file in await evidence.of_cases(session, ids):
        files[str(file.case_id)].append(file)
    for comp in await session.scalars(
        select(Compensation).where(Compensation.case_id.in_(ids)).order_by(Compensation.id)
    ):
        # The carrier claim is between the platform and the carrier.
        if principal.role is not Role.customer or comp.kind == "customer":
            comps[comp.case_id].append(comp)
    return [
        CaseRead(
            id=case.id, order_id=case.order_id, store_id=case.store_id, type=case.type, state=case.state,
            reason_code=case.reason_code, description=case.description, asked_fen=case.asked_fen,
            agreed_fen=case.agreed_fen, refunded_fen=case.refunded_fen, refund_attempt=case.refund_attempt,
            proposal=case.proposal, reject_reason_code=case.reject_reason_code,
            return_shipment=case.return_shipment, reship_shipment=case.reship_shipment, ruling=case.ruling,
            deadline=case.deadline, deadline_at=case.deadline_at,
            next_actions=next_actions(State(case.state), CaseType(case.type)),
            lines=lines[case.id],
            evidence=[EvidenceRead.model_validate(f) for f in files[case.id]],
            compensations=[CompensationRead.model_validate(c) for c in comps[case.id]],
            delivery_proofs=case.delivery_proofs if principal.role is not Role.customer else [],
            created_at=case.created_at, updated_at=case.updated_at, closed_at=case.closed_at,
        )
        for case in rows
    ]  # fmt: skip


async def case_read(session: DbSession, principal: Principal, case: AftersalesCase) -> CaseRead:
    return (await case_reads(session, principal, [case]))[0]


@router.post("/cases", status_code=201, summary="The customer applies (refund, return, exchange, cancel request)")
async def apply(
    request: Request, response: Response, session: DbSession, principal: Caller, body: ApplyCommand,
    idempotency_key: IdempotencyKey = None,
) -> CaseRead:  # fmt: skip
    cases = _cases(request)
    applied = await cases.apply(session, principal, body, idempotency_key)
    if applied.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/aftersales/cases/{applied.case.id}"
    return await case_read(session, principal, applied.case)


@router.get("/cases", summary="Cases the caller may see, newest first or the soonest deadline first")
async def list_cases(
    session: DbSession,
    principal: Caller,
    state: State | None = None,
    order_id: Annotated[str | None, Query(max_length=64)] = None,
    store_id: Annotated[str | None, Query(max_length=64)] = None,
    still_open: Annotated[bool | None, Query(alias="open", description="true: cases not closed; false: closed")] = None,
    sort: Annotated[CaseOrder, Query(description="newest first, or the soonest deadline first (none last)")] = "newest",
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> CasePage:
    require_tenant(principal)
    conditions = []
    if principal.role is Role.customer:
        conditions.append(AftersalesCase.customer_id == principal.sub)
    else:
        conditions += store_conditions(principal, AftersalesCase.merchant_id, AftersalesCase.store_id)
    if principal.order_id is not None:
        conditions.append(AftersalesCase.order_id == principal.order_id)
    if state is not None:
        conditions.append(AftersalesCase.state == state.value)
    if order_id is not None:
        conditions.append(AftersalesCase.order_id == order_id)
    if store_id is not None:
        conditions.append(AftersalesCase.store_id == store_id)
    if still_open is not None:
        conditions.append(AftersalesCase.closed_at.is_(None) if still_open else AftersalesCase.closed_at.is_not(None))
    order = (
        (AftersalesCase.deadline_at.asc().nulls_last(), AftersalesCase.created_at, AftersalesCase.id)
        if sort == "deadline"
        else (AftersalesCase.created_at.desc(), AftersalesCase.id)
    )
    total = await session.scalar(select(func.count()).select_from(AftersalesCase).where(*conditions))
    rows = (
        await session.scalars(select(AftersalesCase).where(*conditions).order_by(*order).offset(offset).limit(limit))
    ).all()
    items = await case_reads(session, principal, rows)
    return CasePage(items=items, total=int(total or 0), offset=offset, limit=limit)


@router.get("/cases/{case_id}", summary="One case, its deadline and what each side may do next")
async def get_case(request: Request, session: DbSession, principal: Caller, case_id: str) -> CaseRead:
    return await case_read(session, principal, await _cases(request).visible(session, principal, case_id))


@router.get("/cases/{case_id}/history", summary="Every move of the case: who, when, why")
async def case_history(request: Request, session: DbSession, principal: Caller, case_id: str) -> list[CaseChangeRead]:
    case = await _cases(request).visible(session, principal, case_id)
    changes = await session.scalars(select(CaseChange).where(CaseChange.case_id == case.id).order_by(CaseChange.id))
    return [CaseChangeRead.model_validate(change) for change in changes]


@router.post("/cases/{case_id}/ruling", summary="Ops rule an arbitration: refund (part of) what was asked, or reject")
async def rule(request: Request, session: DbSession, principal: Ops, case_id: str, body: RulingCommand) -> CaseRead:
    cases = _cases(request)
    case = await cases.visible(session, principal, case_id, lock=True)
    await cases.rule(session, principal, case, body.outcome, body.amount_fen, body.note)
    return await case_read(session, principal, case)


@router.post("/cases/{case_id}/deadline", summary="Ops extend the running deadline")
async def extend(request: Request, session: DbSession, principal: Ops, case_id: str, body: ExtendCommand) -> CaseRead:
    cases = _cases(request)
    case = await cases.visible(session, principal, case_id, lock=True)
    await cases.extend(session, principal, case, body.deadline_at, body.note)
    return await case_read(session, principal, case)


@router.post("/cases/{case_id}/{action}", summary="A party's action: " + ", ".join(ACTIONS))
async def act(
    request: Request,
    session: DbSession,
    principal: Caller,
    case_id: str,
    action: str,
    body: ActionCommand | None = None,
) -> CaseRead:
    if action not in ACTIONS:
        raise NotFound(f"No action {action!r}; one of {', '.join(ACTIONS)}")
    cases = _cases(request)
    case = await cases.visible(session, principal, case_id, lock=True)
    command = (body or ActionCommand()).model_dump(mode="json")
    if ACTIONS[action] is Action.negotiate and command.get("amount_fen") is None:
        raise ValidationFailed("A proposal names its amount_fen")
    await cases.act(session, principal, case, ACTIONS[action], command)
    return await case_read(session, principal, case)


@router.post("/evidence", status_code=201, summary="Upload an image (JPEG, PNG, WebP) as the request body")
async def upload_evidence(
    request: Request, response: Response, session: DbSession, clock: AppClock, principal: Caller,
    case_id: Annotated[str | None, Query(max_length=64)] = None, idempotency_key: IdempotencyKey = None,
) -> EvidenceRead:  # fmt: skip
    cases = _cases(request)
    content = await evidence.read_capped(request, cases.settings.evidence_max_bytes)
    stored, replayed = await evidence.upload(
        session, cases, principal, content, case_id=case_id, idempotency_key=idempotency_key, clock=clock
    )
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/aftersales/evidence/{stored.id}"
    return EvidenceRead.model_validate(stored)


@router.get("/evidence/{evidence_id}", summary="An evidence image (the case's parties and ops only)")
async def get_evidence(session: DbSession, principal: Caller, evidence_id: uuid.UUID) -> Response:
    require_tenant(principal)
    stored = await evidence.visible(session, principal, evidence_id)
    return Response(
        stored.content,
        media_type=stored.content_type,
        headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox",
                 "Cache-Control": "private, no-store"},
    )  # fmt: skip


@router.get("/reasons", summary="The reasons a customer applies with, and a merchant rejects with, by case type")
async def reasons(principal: Caller, type: CaseType | None = None) -> dict[str, list[ReasonRead]]:
    def read(table: dict[str, object]) -> list[ReasonRead]:
        return [
            ReasonRead(code=code, title=r.title, types=sorted(t.value for t in r.types), evidence=r.evidence.value)  # type: ignore[attr-defined]
            for code, r in table.items()
            if type is None or type in r.types  # type: ignore[attr-defined]
        ]

    return {"apply": read(dict(REASONS)), "reject": read(dict(REJECT_REASONS))}


StoreQuery = Annotated[str | None, Query(min_length=1, max_length=64, description="One store's (default: all)")]


def _policy_scope(principal: Principal, merchant_id: str, store_id: str | None) -> None:
    """Merchant staff and ops of this merchant (and this store); anyone else finds nothing."""
    require_tenant(principal)
    allowed = covers_store(principal, merchant_id, store_id) if store_id else covers_merchant(principal, merchant_id)
    if principal.role in (Role.customer, Role.rider) or not allowed:
        raise NotFound(f"No policy for {merchant_id}")


@router.get("/policies/{merchant_id}", summary="The deadlines and windows that apply to a merchant (or one store)")
async def get_policy(
    request: Request, session: DbSession, principal: Caller, merchant_id: str, store_id: StoreQuery = None
) -> dict[str, object]:
    _policy_scope(principal, merchant_id, store_id)
    cases = _cases(request)
    return policy.defaults(cases.settings) | await policy.overrides_of(session, merchant_id, store_id or "")


@router.put("/policies/{merchant_id}", summary="A merchant shortens its own answers, lengthens the customer's")
async def put_policy(
    request: Request, session: DbSession, clock: AppClock, principal: Caller, merchant_id: str, body: PolicyUpdate,
    store_id: StoreQuery = None,
) -> dict[str, object]:  # fmt: skip
    """Replaces the overrides of the merchant (all its stores), or with `store_id` of one store (over the
    merchant's); store-scoped staff set only their stores'."""
    _policy_scope(principal, merchant_id, store_id)
    if store_id is None and principal.role is Role.merchant and principal.store_ids:
        raise Forbidden("Store-scoped staff set their stores' after-sales policy, not the merchant's")
    cases = _cases(request)
    by = f"{principal.role.value}:{principal.sub}"
    return await policy.save(session, cases.settings, merchant_id, store_id or "", body.model_dump(exclude_none=True),
                             by=by, now=clock.now())  # fmt: skip


@router.post("/compensations/{compensation_id}/settlement", summary="Ops record what a carrier paid on a claim")
async def settle_claim(
    session: DbSession,
    clock: AppClock,
    principal: Ops,
    compensation_id: Annotated[int, Path(ge=1, le=INT4_MAX)],
    body: ClaimSettlement,
) -> CompensationRead:
    claim = await session.get(Compensation, compensation_id, with_for_update=True)
    if claim is None:
        raise CaseNotFound(f"No compensation {compensation_id}")
    case = await session.get_one(AftersalesCase, claim.case_id)
    if not may_see(principal, case):
        raise CaseNotFound(f"No compensation {compensation_id}")
    await compensation.settle_claim(session, claim, body.recovered_fen, clock.now())
    return CompensationRead.model_validate(claim)
