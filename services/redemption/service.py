"""Redemption use cases: issue, verify (the atomic ledger), preview, reverse, freeze/revoke/reissue, expire.

Verification is decided by one conditional UPDATE (`uses_left >= n AND status = 'active' AND valid now`), so of
any number of concurrent scans exactly as many succeed as there are uses. Each request_no is answered once and the
answer stored: the same request_no gets the same answer, success or refusal, and redeems nothing more. Every
attempt lands in the audit log; guesses (mistyped, unknown or forged codes) count towards a lockout of the store,
the device and the principal (the store and device only when the caller works at that store, so nobody can lock
another merchant out).

A redemption that nothing stands in the way of is one statement, `redeem_code` (a PL/pgSQL function, migration
redemption_0005): the request_no's lock, the lockout check, the conditional update with the caller's tenancy as its
terms, the ledger, audit, answer and outbox rows. Everything else (replays, lockouts, refusals and their precise
reasons) takes the full path below, which the function leaves to when it writes nothing.

A finish code is proof of delivery: a rider redeems one only with dispatch's handover voucher (shared/handover.py),
and only the finish code of the order the voucher names, checked before the conditional update. QR secrets are
sealed at rest (shared/vault.py).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.redemption import codes, events
from services.redemption.consumed import OrderToCode
from services.redemption.errors import (
    AlreadyRedeemed,
    CheckDigitFailed,
    CodeExpired,
    CodeFrozen,
    CodeNotFound,
    CodeRevoked,
    HandoverRequired,
    LockedOut,
    NotEnoughUses,
    NotYetValid,
    RedemptionNotFound,
    RequestNoReused,
    ReversalNotAllowed,
    TokenNotValid,
    WrongOrder,
    WrongStore,
)
from services.redemption.models import Attempt, Code, Lockout, Redemption, RedemptionRequest
from services.redemption.settings import RedemptionSettings
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.errors import Conflict, Forbidden, Refused, ServiceError, ValidationFailed, problem_body
from shared.handover import Voucher
from shared.tenancy import covers_merchant, covers_store
from shared.timers import schedule_timer
from shared.vault import Vault

EXPIRE_TIMER = "code.expire"
# Refusals that look like guessing (or a rider trying codes that are not their delivery's): they count towards a
# lockout.
GUESSES = (CheckDigitFailed, CodeNotFound, TokenNotValid, WrongOrder)
LIVE = ("active", "frozen")


def actor_of(principal: Principal) -> str:
    return f"{principal.role.value}:{principal.sub}"


def qr_secret(vault: Vault, code: Code) -> bytes:
    """The code's TOTP key, unsealed."""
    return vault.open_bytes(code.secret_sealed, str(code.id))


# --- issuing ----------------------------------------------------------------------------------------------------


async def _unused_number(session: AsyncSession) -> str:
    while True:  # 10^11 numbers: a collision is rare, and checked
        number = codes.new_code()
        if await session.scalar(select(Code.id).where(Code.code == number)) is None:
            return number


async def issue_code(
    session: AsyncSession,
    clock: Clock,
    vault: Vault,
    *,
    kind: str,
    merchant_id: str,
    store_id: str,
    customer_id: str,
    title: str,
    summary: dict[str, Any],
    uses: int,
    valid_from: datetime,
    valid_until: datetime,
    order_id: str | None = None,
    replaces: uuid.UUID | None = None,
) -> Code:
    now = clock.now()
    code_id = uuid.uuid4()
    code = Code(
        id=code_id,
        code=await _unused_number(session),
        kind=kind,
        status="active",
        order_id=order_id,
        merchant_id=merchant_id,
        store_id=store_id,
        customer_id=customer_id,
        title=title,
        summary=summary,
        uses_total=uses,
        uses_left=uses,
        cycles=0,
        secret_sealed=vault.seal_bytes(codes.new_secret(), str(code_id)),
        valid_from=valid_from,
        valid_until=valid_until,
        replaces=replaces,
        issued_at=now,
        updated_at=now,
    )
    session.add(code)
    await session.flush()
    await schedule_timer(session, kind=EXPIRE_TIMER, key=str(code.id), due_at=valid_until)
    await events.publish(session, clock, code, events.ISSUED)
    return code


# The code each fulfilment mode needs, and the order event that issues it: a finish code once the order is paid
# (shown at the door; only the rider's handover redeems it, after pickup), a pickup code once the merchant accepted
# (before that, a redeemed pickup code could meet an order refunded for not being accepted).
ORDER_CODE_KINDS = {"pickup": ("pickup", "order.accepted.v1"), "delivery": ("finish", "order.paid.v1")}


def issues_code(event_type: str, order: OrderToCode) -> bool:
    """Whether `event_type` is the order event that issues the code the order's fulfilment mode needs."""
    _, issued_on = ORDER_CODE_KINDS.get(order.fulfilment_mode, (None, None))
    return issued_on == event_type


async def issue_order_codes(
    session: AsyncSession, clock: Clock, settings: RedemptionSettings, vault: Vault, event_type: str,
    order: OrderToCode,
) -> None:  # fmt: skip
    """The code the order's fulfilment mode needs, when `event_type` is the event that issues it."""
    if not issues_code(event_type, order):
        return
    kind, _ = ORDER_CODE_KINDS[order.fulfilment_mode]
    order_id = order.order_id
    live = await session.scalar(
        select(Code.id).where(Code.order_id == order_id, Code.kind == kind, Code.status.in_(LIVE))
    )
    if live is not None:
        return
    now = clock.now()
    store = order.store
    await issue_code(
        session,
        clock,
        vault,
        kind=kind,
        merchant_id=order.merchant_id,
        store_id=store.id,
        customer_id=order.customer_id,
        title=f"{store.name} {'取餐码' if kind == 'pickup' else '收货码'}".strip(),
        summary={"items": order.items, "amounts": order.amounts, "mode": order.fulfilment_mode},
        uses=1,
        valid_from=now,
        valid_until=now + timedelta(hours=settings.order_code_valid_hours),
        order_id=order_id,
    )


async def end_order_codes(session: AsyncSession, clock: Clock, order_id: str, *, revoke: bool, reason: str) -> None:
    """An order that ended takes its live codes with it: revoked (cancelled, refunded) or expired (completed)."""
    ended = (
        await session.scalars(
            update(Code)
            .where(Code.order_id == order_id, Code.status.in_(LIVE))
            .values(status="revoked" if revoke else "expired", status_reason=reason, updated_at=clock.now())
            .returning(Code)
            .execution_options(synchronize_session=False)
        )
    ).all()
    if revoke:
        for code in ended:
            await events.publish(session, clock, code, events.REVOKED, reason=reason)


async def expire_code(session: AsyncSession, clock: Clock, code_id: str) -> None:
    await session.execute(
        update(Code)
        .where(Code.id == uuid.UUID(code_id), Code.status.in_(LIVE), Code.valid_until <= clock.now())
        .values(status="expired", status_reason="validity ended", updated_at=clock.now())
    )


# --- who may touch a code ---------------------------------------------------------------------------------------


def may_manage(principal: Principal, code: Code) -> bool:
    """The owner customer, the code's merchant staff (its listed stores, if the token lists any), or ops."""
    if principal.role is Role.customer:
        return code.customer_id == principal.sub
    if principal.role is Role.rider:
        return False
    return covers_store(principal, code.merchant_id, code.store_id)


async def visible_code(session: AsyncSession, principal: Principal, code_id: uuid.UUID, *, lock: bool = False) -> Code:
    stmt = select(Code).where(Code.id == code_id)
    code = await session.scalar(stmt.with_for_update() if lock else stmt)
    if code is None or not may_manage(principal, code):
        raise CodeNotFound(f"No code {code_id}")
    return code


# --- verifying ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Presented:
    """What the scanner read: a typed numeric code or a QR token, and where it was presented."""

    code: str | None
    qr_token: str | None
    store_id: str | None
    device_id: str | None
    ip: str | None
    lat: float | None
    lng: float | None

    def shown(self) -> str:
        if self.qr_token:
            return "qr"
        return codes.masked(codes.normalise(self.code or "") or (self.code or ""))


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: dict[str, Any]
    replayed: bool = False


async def _resolve(session: AsyncSession, vault: Vault, presented: Presented, now: datetime, *, lock: bool) -> Code:
    """The code presented, or a guess-type refusal (mistyped, unknown, forged or stale token)."""
    if presented.qr_token:
        parsed = codes.parse_token(presented.qr_token)
        if parsed is None:
            raise TokenNotValid("This is not a Songda QR code")
        stmt = select(Code).where(Code.id == parsed[0])
        code = await session.scalar(stmt.with_for_update() if lock else stmt)
        if code is None or not codes.token_valid(qr_secret(vault, code), parsed[1], now):
            raise TokenNotValid("The QR code is stale or forged: ask the customer to refresh it")
        return code
    number = codes.normalise(presented.code or "")
    if number is None:
        raise CheckDigitFailed("A code is 12 digits")
    if not codes.check_digit_ok(number):
        raise CheckDigitFailed("The code is mistyped: its check digit does not match")
    stmt = select(Code).where(Code.code == number)
    code = await session.scalar(stmt.with_for_update() if lock else stmt)
    if code is None:
        raise CodeNotFound("No such code")
    return code


def _check_voucher(principal: Principal, voucher: Voucher | None) -> None:
    """A rider redeems only through dispatch's handover, with a voucher naming this very rider."""
    if principal.role is not Role.rider:
        return
    if voucher is None:
        raise HandoverRequired("Riders redeem a finish code through the handover of their task (dispatch)")
    if voucher.rider_id != principal.sub or voucher.merchant_id != principal.merchant_id:
        raise HandoverRequired("The handover voucher is for another rider")


def _authorise(principal: Principal, code: Code, store_id: str | None, voucher: Voucher | None) -> None:
    """Merchant staff redeem their own merchant's codes at its stores (their listed stores, if the token lists
    any), but not finish codes: those prove a delivery and are redeemed at the door. A rider redeems only the finish
    code of the order dispatch's voucher names (assigned to them and picked up). A code of another merchant is 'not
    found': its existence is nobody else's business."""
    if principal.role is Role.customer:
        raise Forbidden("Customers show codes; staff and riders redeem them")
    if principal.role in (Role.merchant, Role.rider) and not covers_merchant(principal, code.merchant_id):
        raise CodeNotFound("No such code")
    if principal.role is Role.merchant:
        if store_id is not None and not covers_store(principal, principal.merchant_id, store_id):
            raise Forbidden(f"This staff account does not work at store {store_id}")
        if code.kind == "finish":
            raise HandoverRequired("A finish code is redeemed at the door by the rider's handover, not at a store")
    elif principal.role is Role.rider:
        assert voucher is not None  # _check_voucher ran first
        if code.kind != "finish" or code.order_id != voucher.order_id:
            raise WrongOrder("This is not the finish code of the order you are handing over")
    if store_id is not None and store_id != code.store_id:
        raise WrongStore(f"This code is for store {code.store_id}", code_store_id=code.store_id)
    if principal.role is not Role.rider and store_id is None:
        raise ValidationFailed("store_id is required")


async def _last_redemption(session: AsyncSession, code: Code) -> Redemption | None:
    return await session.scalar(
        select(Redemption)
        .where(Redemption.code_id == code.id, Redemption.reversed_at.is_(None))
        .order_by(Redemption.redeemed_at.desc())
        .limit(1)
    )


async def _refusal_for(session: AsyncSession, code: Code, count: int, now: datetime) -> ServiceError:
    """Why the conditional update matched nothing, as precisely as the row tells."""
    if code.status == "frozen":
        return CodeFrozen(f"Code frozen: {code.status_reason or 'reported stolen'}")
    if code.status == "revoked":
        return CodeRevoked(
            f"Code revoked: {code.status_reason or ''}".strip(), replaced=code.status_reason == "reissued"
        )
    if code.status == "expired" or code.valid_until <= now:
        return CodeExpired(f"Code expired at {code.valid_until.isoformat()}", valid_until=code.valid_until.isoformat())
    if code.valid_from > now:
        return NotYetValid(f"Code valid from {code.valid_from.isoformat()}", valid_from=code.valid_from.isoformat())
    if code.uses_left == 0:
        last = await _last_redemption(session, code)
        extra = {}
        if last is not None:
            extra = {"redeemed_at": last.redeemed_at.isoformat(), "redeemed_at_store": last.store_id,
                     "redeemed_by": last.principal, "device_id": last.device_id}  # fmt: skip
        when = f" at {last.redeemed_at.isoformat()} in store {last.store_id} by {last.principal}" if last else ""
        return AlreadyRedeemed(f"Code already used{when}", **extra)
    return NotEnoughUses(f"{code.uses_left} use(s) left, {count} asked", uses_left=code.uses_left)


async def _locked(session: AsyncSession, scopes: list[tuple[str, str]], now: datetime) -> Lockout | None:
    if not scopes:
        return None
    return await session.scalar(
        select(Lockout)
        .where(or_(*[and_(Lockout.scope == s, Lockout.key == k) for s, k in scopes]), Lockout.locked_until > now)
        .limit(1)
    )


async def _refuse_if_locked(
    session: AsyncSession, scopes: list[tuple[str, str]], now: datetime, settings: RedemptionSettings
) -> None:
    if await _locked(session, scopes, now) is not None:
        raise LockedOut(
            "Too many failed attempts here; ask ops to unlock or wait", retry_after_minutes=settings.lockout_minutes
        )


async def _record_refusal(
    session: AsyncSession,
    principal: Principal,
    presented: Presented,
    action: str,
    refusal: ServiceError,
    scopes: list[tuple[str, str]],
    now: datetime,
    settings: RedemptionSettings,
    code: Code | None,
    request_no: str | None = None,
) -> None:
    """Audits a refused attempt; a guess also counts towards the lockout of its scopes."""
    guess = isinstance(refusal, GUESSES)
    counted = scopes if guess else []
    await _audit(session, principal, presented, action, refusal.code, guess, now, code, request_no, counted)
    if guess:
        await _count_failure(session, scopes, now, settings)


def _scopes(principal: Principal, presented: Presented) -> list[tuple[str, str]]:
    """The lockout scopes an attempt counts towards: always the caller; the store it names and the device there only
    for the staff and riders of a merchant, keyed under the caller's own merchant (`<merchant>:<store>` and
    `<merchant>:<store>:<device>`) and only for a store the caller's token covers. A store belongs to one merchant,
    so its keys are reachable by that merchant's people alone: naming another merchant's store or scanner (or
    issuing a voucher that names it) counts under the caller's merchant and locks out nobody else."""
    scopes = [("principal", principal.sub)]
    tenant = principal.merchant_id
    if not presented.store_id or tenant is None or not covers_store(principal, tenant, presented.store_id):
        return scopes
    scopes.append(("store", f"{tenant}:{presented.store_id}"))
    if presented.device_id:
        scopes.append(("device", f"{tenant}:{presented.store_id}:{presented.device_id}"))
    return scopes


async def _count_failure(
    session: AsyncSession, scopes: list[tuple[str, str]], now: datetime, settings: RedemptionSettings
) -> None:
    """After a guess: lock every scope that reached the limit within the window (since its last unlock)."""
    window_start = now - timedelta(minutes=settings.lockout_window_minutes)
    columns = {"principal": Attempt.principal, "store": Attempt.lockout_store, "device": Attempt.lockout_device}
    for scope, key in scopes:
        counted_from = await session.scalar(
            select(Lockout.counted_from).where(Lockout.scope == scope, Lockout.key == key)
        )
        since = max(window_start, counted_from) if counted_from else window_start
        failures = await session.scalar(
            select(func.count())
            .select_from(Attempt)
            .where(columns[scope] == key, Attempt.failed.is_(True), Attempt.at > since)
        )
        if (failures or 0) >= settings.lockout_failures:
            until = now + timedelta(minutes=settings.lockout_minutes)
            stmt = insert(Lockout).values(scope=scope, key=key, locked_until=until)
            await session.execute(
                stmt.on_conflict_do_update(index_elements=["scope", "key"], set_={"locked_until": until})
            )


def _request_hash(presented: Presented, count: int) -> str:
    material = f"{presented.code}|{presented.qr_token}|{presented.store_id}|{count}"
    return hashlib.sha256(material.encode()).hexdigest()


async def verify(
    session: AsyncSession,
    principal: Principal,
    presented: Presented,
    *,
    request_no: str,
    count: int,
    voucher: Voucher | None,
    clock: Clock,
    settings: RedemptionSettings,
    vault: Vault,
) -> Outcome:
    """Redeems `count` uses of the presented code, or refuses precisely. Never raises for a refusal: the refusal
    is the answer, stored under the request_no and written to the audit log in this transaction (a rider without a
    voucher for themselves is refused before any request_no is looked at)."""
    now = clock.now()
    try:
        _check_voucher(principal, voucher)
    except ServiceError as refusal:
        await _audit(session, principal, presented, "verify", refusal.code, False, now, None, request_no)
        return Outcome(refusal.status, problem_body(refusal, instance="/v1/redemptions"))
    scope = principal.merchant_id or principal.sub
    request_hash = _request_hash(presented, count)
    answer = await _redeem_at_once(session, principal, presented, voucher, scope, request_no, request_hash, count,
                                   now, clock, vault)  # fmt: skip
    if answer is not None:
        return Outcome(201, answer)
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"redeem:{scope}:{request_no}"}
    )
    earlier = await session.scalar(
        select(RedemptionRequest).where(RedemptionRequest.scope == scope, RedemptionRequest.request_no == request_no)
    )
    if earlier is not None:
        if earlier.request_hash != request_hash:
            raise RequestNoReused("Retry with the same request, or use a new request_no for a new one")
        await _audit(session, principal, presented, "verify", "replayed", False, now, None, request_no)
        return Outcome(earlier.status_code, earlier.answer, replayed=True)

    scopes = _scopes(principal, presented)
    code: Code | None = None
    try:
        await _refuse_if_locked(session, scopes, now, settings)
        code = await _resolve(session, vault, presented, now, lock=False)
        _authorise(principal, code, presented.store_id, voucher)
        left = await session.scalar(
            update(Code)
            .where(
                Code.id == code.id,
                Code.status == "active",
                Code.uses_left >= count,
                Code.valid_from <= now,
                Code.valid_until > now,
            )
            .values(
                uses_left=Code.uses_left - count,
                status=case((Code.uses_left - count == 0, "redeemed"), else_=Code.status),
                updated_at=now,
            )
            .returning(Code.uses_left)
            .execution_options(synchronize_session=False)
        )
        if left is None:
            await session.refresh(code)
            raise await _refusal_for(session, code, count, now)
    except ServiceError as refusal:
        await _record_refusal(session, principal, presented, "verify", refusal, scopes, now, settings, code, request_no)
        answer = problem_body(refusal, instance="/v1/redemptions")
        if not isinstance(refusal, LockedOut):  # transient: the same request may pass after an unlock
            await _remember(session, scope, request_no, request_hash, refusal.status, answer, now)
        return Outcome(refusal.status, answer)

    await session.refresh(code)
    redemption = Redemption(
        id=uuid.uuid4(),
        code_id=code.id,
        count=count,
        store_id=code.store_id,
        principal=actor_of(principal),
        device_id=presented.device_id,
        request_no=request_no,
        redeemed_at=now,
    )
    session.add(redemption)
    await _audit(session, principal, presented, "verify", "redeemed", False, now, code, request_no)
    answer = redemption_view(redemption, code)
    await _remember(session, scope, request_no, request_hash, 201, answer, now)
    await events.publish(
        session,
        clock,
        code,
        events.REDEEMED,
        redemption_id=str(redemption.id),
        count=count,
        uses_left=code.uses_left,
        redeemed_by=redemption.principal,
        device_id=presented.device_id,
    )
    return Outcome(201, answer)


def _terms(principal: Principal, presented: Presented, voucher: Voucher | None) -> dict[str, Any] | None:
    """What `_authorise` asks of the code, as the conditions of the conditional update in `redeem_code`, and the
    lockout scopes the caller counts towards if the code passes them; None when the caller's request needs the full
    path to be answered (it can only be refused)."""
    store_id = presented.store_id
    if principal.role is Role.ops:
        if store_id is None:
            return None
        merchant_id, finish, order_id = None, None, None
    elif principal.role is Role.merchant:
        if store_id is None or not covers_store(principal, principal.merchant_id, store_id):
            return None
        merchant_id, finish, order_id = principal.merchant_id, False, None
    elif principal.role is Role.rider and voucher is not None:
        merchant_id, finish, order_id = principal.merchant_id, True, voucher.order_id
    else:
        return None
    if principal.role is not Role.ops and merchant_id is None:
        return None
    # As `_scopes` finds them: the store (known by the code, which is of this store) only for its staff.
    scopes = [("principal", principal.sub)]
    if store_id and covers_store(principal, merchant_id or "", store_id):
        scopes.append(("store", store_id))
        if presented.device_id:
            scopes.append(("device", f"{store_id}:{presented.device_id}"))
    return {
        "merchant_id": merchant_id,
        "store_id": store_id,
        "finish": finish,
        "order_id": order_id,
        "lock_scopes": [s for s, _ in scopes],
        "lock_keys": [k for _, k in scopes],
    }


# On the session's asyncpg connection: no ORM or compilation in the hot path, and no BEGIN/COMMIT of its own when it
# is the session's first statement (the function is atomic by itself).
REDEEM_CODE = (
    "SELECT redeem_code($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,"
    " $21, $22, $23, $24, $25::jsonb)"
)


async def _redeem_at_once(
    session: AsyncSession,
    principal: Principal,
    presented: Presented,
    voucher: Voucher | None,
    scope: str,
    request_no: str,
    request_hash: str,
    count: int,
    now: datetime,
    clock: Clock,
    vault: Vault,
) -> dict[str, Any] | None:
    """The redemption in one statement (`redeem_code`, migration redemption_0005) when nothing stands in its way:
    the answer, stored with the ledger, audit and outbox rows. None, with nothing written, when the request needs
    the full path: a replay, a lockout, a code the caller may not redeem, or a refusal to explain. A QR token costs
    one more statement: its code's secret, to check the token before."""
    terms = _terms(principal, presented, voucher)
    if terms is None:
        return None
    parsed = codes.parse_token(presented.qr_token) if presented.qr_token else None
    number = None if presented.qr_token else codes.normalise(presented.code or "")
    if parsed is None and (number is None or not codes.check_digit_ok(number)):
        return None
    envelope = events.envelope(clock, events.REDEEMED).model_dump_json()
    # The pool's connection is taken only now, with everything that could be worked out before worked out.
    connection = (await (await session.connection()).get_raw_connection()).driver_connection
    code_id: uuid.UUID | None = None
    if parsed is not None:
        sealed = await connection.fetchval("SELECT secret_sealed FROM code WHERE id = $1", parsed[0])
        if sealed is None or not codes.token_valid(vault.open_bytes(sealed, str(parsed[0])), parsed[1], now):
            return None
        code_id = parsed[0]
    answer: dict[str, Any] | None = await connection.fetchval(
        REDEEM_CODE,
        *(scope, request_no, request_hash, number, code_id, count, now, now.isoformat()),
        *(terms["merchant_id"], terms["store_id"], terms["finish"], terms["order_id"]),
        *(terms["lock_scopes"], terms["lock_keys"]),
        *(uuid.uuid4(), actor_of(principal), principal.sub, principal.role.value),
        *(presented.device_id, presented.ip, presented.lat, presented.lng, presented.shown()),
        *(events.TOPIC, envelope),
    )
    return answer


async def _remember(
    session: AsyncSession,
    scope: str,
    request_no: str,
    request_hash: str,
    status: int,
    answer: dict[str, Any],
    now: datetime,
) -> None:
    session.add(
        RedemptionRequest(
            scope=scope,
            request_no=request_no,
            request_hash=request_hash,
            status_code=status,
            answer=answer,
            created_at=now,
        )
    )
    await session.flush()


async def _audit(
    session: AsyncSession,
    principal: Principal,
    presented: Presented,
    action: str,
    result: str,
    failed: bool,
    now: datetime,
    code: Code | None,
    request_no: str | None = None,
    counted: list[tuple[str, str]] | None = None,
) -> None:
    keys = dict(counted or [])
    session.add(
        Attempt(
            action=action,
            merchant_id=code.merchant_id if code else principal.merchant_id,
            principal=principal.sub,
            role=principal.role.value,
            store_id=presented.store_id,
            device_id=presented.device_id,
            ip=presented.ip,
            lat=presented.lat,
            lng=presented.lng,
            code_id=code.id if code else None,
            presented=presented.shown(),
            request_no=request_no,
            result=result,
            failed=failed,
            lockout_store=keys.get("store"),
            lockout_device=keys.get("device"),
            at=now,
        )
    )
    await session.flush()


def redemption_view(redemption: Redemption, code: Code) -> dict[str, Any]:
    return {
        "id": str(redemption.id),
        "code_id": str(code.id),
        "kind": code.kind,
        "order_id": code.order_id,
        "store_id": redemption.store_id,
        "count": redemption.count,
        "uses_left": code.uses_left,
        "status": code.status,
        "redeemed_at": redemption.redeemed_at.isoformat(),
        "redeemed_by": redemption.principal,
        "reversed_at": redemption.reversed_at.isoformat() if redemption.reversed_at else None,
        "summary": code.summary,
    }


# --- preview, reversal, freeze / revoke / reissue -----------------------------------------------------------


async def preview(
    session: AsyncSession,
    principal: Principal,
    presented: Presented,
    voucher: Voucher | None,
    clock: Clock,
    settings: RedemptionSettings,
    vault: Vault,
) -> Code:
    """What the code would redeem, without redeeming. Audited, and guesses count like a verification's: a refusal is
    raised as `Refused`, so the request session commits its audit row and lockout count before answering."""
    now = clock.now()
    scopes = _scopes(principal, presented)
    code: Code | None = None
    try:
        _check_voucher(principal, voucher)
        await _refuse_if_locked(session, scopes, now, settings)
        code = await _resolve(session, vault, presented, now, lock=False)
        _authorise(principal, code, presented.store_id, voucher)
    except ServiceError as refusal:
        await _record_refusal(session, principal, presented, "preview", refusal, scopes, now, settings, code)
        raise Refused(refusal) from refusal
    await _audit(session, principal, presented, "preview", "previewed", False, now, code)
    return code


async def reverse(
    session: AsyncSession,
    principal: Principal,
    redemption_id: uuid.UUID,
    reason: str,
    clock: Clock,
    settings: RedemptionSettings,
) -> tuple[Redemption, Code]:
    now = clock.now()
    redemption = await session.scalar(select(Redemption).where(Redemption.id == redemption_id).with_for_update())
    if redemption is None:
        raise RedemptionNotFound(f"No redemption {redemption_id}")
    code = await session.scalar(select(Code).where(Code.id == redemption.code_id).with_for_update())
    assert code is not None
    if not may_manage(principal, code) or principal.role is Role.customer:
        raise RedemptionNotFound(f"No redemption {redemption_id}")
    if redemption.reversed_at is not None:
        raise ReversalNotAllowed(f"Reversed already at {redemption.reversed_at.isoformat()}")
    window = timedelta(minutes=settings.reversal_window_minutes)
    if now - redemption.redeemed_at > window:
        raise ReversalNotAllowed(
            f"The reversal window of {settings.reversal_window_minutes} min has passed", reason="window-passed"
        )
    if code.cycles >= settings.max_cycles:
        raise ReversalNotAllowed(f"This code was reversed {code.cycles} times already", reason="too-many-cycles")
    if code.status not in ("active", "redeemed"):
        raise ReversalNotAllowed(f"The code is {code.status}", reason=f"code-{code.status}")
    code.uses_left += redemption.count
    code.status, code.cycles, code.updated_at = "active", code.cycles + 1, now
    redemption.reversed_at, redemption.reversed_by, redemption.reversal_reason = now, actor_of(principal), reason
    await session.flush()
    await events.publish(
        session, clock, code, events.REVERSED, redemption_id=str(redemption.id), count=redemption.count, reason=reason
    )
    return redemption, code


async def freeze(session: AsyncSession, principal: Principal, code_id: uuid.UUID, reason: str, clock: Clock) -> Code:
    code = await visible_code(session, principal, code_id, lock=True)
    if code.status != "active":
        raise Conflict(f"Only an active code can be frozen; this one is {code.status}")
    code.status, code.status_reason, code.updated_at = "frozen", reason or "reported stolen", clock.now()
    await session.flush()
    return code


async def unfreeze(session: AsyncSession, principal: Principal, code_id: uuid.UUID, clock: Clock) -> Code:
    code = await visible_code(session, principal, code_id, lock=True)
    if code.status != "frozen":
        raise Conflict(f"The code is {code.status}, not frozen")
    code.status, code.status_reason, code.updated_at = "active", None, clock.now()
    await session.flush()
    return code


async def revoke(session: AsyncSession, principal: Principal, code_id: uuid.UUID, reason: str, clock: Clock) -> Code:
    code = await visible_code(session, principal, code_id, lock=True)
    if principal.role is Role.customer:
        raise Forbidden("Customers freeze or reissue their codes; revoking is for the merchant")
    if code.status not in LIVE:
        raise Conflict(f"The code is {code.status}")
    code.status, code.status_reason, code.updated_at = "revoked", reason or "revoked", clock.now()
    await session.flush()
    await events.publish(session, clock, code, events.REVOKED, reason=code.status_reason)
    return code


async def reissue(session: AsyncSession, principal: Principal, code_id: uuid.UUID, clock: Clock, vault: Vault) -> Code:
    """A stolen code is voided and a new one (new number, new QR secret) takes its remaining uses."""
    old = await visible_code(session, principal, code_id, lock=True)
    if old.status not in LIVE:
        raise Conflict(f"The code is {old.status}; only a live code can be reissued")
    old.status, old.status_reason, old.updated_at = "revoked", "reissued", clock.now()
    await session.flush()
    await events.publish(session, clock, old, events.REVOKED, reason="reissued")
    new = await issue_code(
        session,
        clock,
        vault,
        kind=old.kind,
        merchant_id=old.merchant_id,
        store_id=old.store_id,
        customer_id=old.customer_id,
        title=old.title,
        summary=old.summary,
        uses=old.uses_left,
        valid_from=old.valid_from,
        valid_until=old.valid_until,
        order_id=old.order_id,
        replaces=old.id,
    )
    new.uses_total = old.uses_total
    new.uses_left = old.uses_left
    await session.flush()
    return new


async def unlock(session: AsyncSession, scope: str, key: str, principal: Principal, clock: Clock) -> Lockout:
    now = clock.now()
    stmt = insert(Lockout).values(
        scope=scope, key=key, locked_until=now, counted_from=now, unlocked_by=actor_of(principal)
    )
    lockout = await session.scalar(
        stmt.on_conflict_do_update(
            index_elements=["scope", "key"],
            set_={"locked_until": now, "counted_from": now, "unlocked_by": actor_of(principal)},
        ).returning(Lockout)
    )
    assert lockout is not None
    return lockout
