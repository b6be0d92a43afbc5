"""The ledger: redeeming (verify), the look before it (preview), and reversing a redemption within its window.

Verification is decided by one conditional UPDATE (`uses_left >= n AND status = 'active' AND valid now`), so of
any number of concurrent scans exactly as many succeed as there are uses. Each request_no is answered once and the
answer stored: the same request_no gets the same answer, success or refusal, and redeems nothing more. A request
nothing stands in the way of is redeemed in one statement first (services/redemption/at_once.py); the full path
here answers the rest, every attempt audited and guesses counted towards lockouts
(services/redemption/lockouts.py)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.redemption import at_once, events, lockouts, scanning
from services.redemption.errors import (
    AlreadyRedeemed,
    CodeExpired,
    CodeFrozen,
    CodeRevoked,
    LockedOut,
    NotEnoughUses,
    NotYetValid,
    RedemptionNotFound,
    RequestNoReused,
    ReversalNotAllowed,
)
from services.redemption.lockouts import actor_of
from services.redemption.managing import may_manage
from services.redemption.models import Code, Redemption, RedemptionRequest
from services.redemption.scanning import Presented
from services.redemption.settings import RedemptionSettings
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.errors import Refused, ServiceError, problem_body
from shared.handover import Voucher
from shared.vault import Vault


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: dict[str, Any]
    replayed: bool = False


def _request_hash(presented: Presented, count: int) -> str:
    material = f"{presented.code}|{presented.qr_token}|{presented.store_id}|{count}"
    return hashlib.sha256(material.encode()).hexdigest()


async def verify_at_once(
    engine: AsyncEngine,
    principal: Principal,
    presented: Presented,
    *,
    request_no: str,
    count: int,
    voucher: Voucher | None,
    clock: Clock,
    vault: Vault,
) -> Outcome | None:
    """The common case, without a session (whose machinery was a fifth of a redemption's CPU): the code redeemed in
    one statement (`at_once`). None, with nothing written, when the request needs `verify`: a replay, a lockout, a
    refusal to explain and audit."""
    try:
        scanning.check_voucher(principal, voucher)
    except ServiceError:
        return None
    scope = principal.merchant_id or principal.sub
    answer = await at_once.redeem_at_once(
        engine, principal, presented, voucher, scope, request_no, _request_hash(presented, count), count,
        clock.now(), clock, vault,
    )  # fmt: skip
    return None if answer is None else Outcome(201, answer)


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
    """Redeems `count` uses of the presented code, or refuses precisely (what `verify_at_once` left). Never raises
    for a refusal: the refusal is the answer, stored under the request_no and written to the audit log in this
    transaction (a rider without a voucher for themselves is refused before any request_no is looked at)."""
    now = clock.now()
    try:
        scanning.check_voucher(principal, voucher)
    except ServiceError as refusal:
        await lockouts.audit(session, principal, presented, "verify", refusal.code, False, now, None, request_no)
        return Outcome(refusal.status, problem_body(refusal, instance="/v1/redemptions"))
    scope = principal.merchant_id or principal.sub
    request_hash = _request_hash(presented, count)
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"redeem:{scope}:{request_no}"}
    )
    earlier = await session.scalar(
        select(RedemptionRequest).where(RedemptionRequest.scope == scope, RedemptionRequest.request_no == request_no)
    )
    if earlier is not None:
        if earlier.request_hash != request_hash:
            raise RequestNoReused("Retry with the same request, or use a new request_no for a new one")
        await lockouts.audit(session, principal, presented, "verify", "replayed", False, now, None, request_no)
        return Outcome(earlier.status_code, earlier.answer, replayed=True)

    scopes = lockouts.lockout_scopes(principal, presented)
    code: Code | None = None
    try:
        await lockouts.refuse_if_locked(session, scopes, now, settings)
        code = await scanning.resolve(session, vault, presented, now, lock=False)
        scanning.authorise(principal, code, presented.store_id, voucher)
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
        await lockouts.record_refusal(
            session, principal, presented, "verify", refusal, scopes, now, settings, code, request_no
        )
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
    await lockouts.audit(session, principal, presented, "verify", "redeemed", False, now, code, request_no)
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
    scopes = lockouts.lockout_scopes(principal, presented)
    code: Code | None = None
    try:
        scanning.check_voucher(principal, voucher)
        await lockouts.refuse_if_locked(session, scopes, now, settings)
        code = await scanning.resolve(session, vault, presented, now, lock=False)
        scanning.authorise(principal, code, presented.store_id, voucher)
    except ServiceError as refusal:
        await lockouts.record_refusal(session, principal, presented, "preview", refusal, scopes, now, settings, code)
        raise Refused(refusal) from refusal
    await lockouts.audit(session, principal, presented, "preview", "previewed", False, now, code)
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
