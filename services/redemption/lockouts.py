"""The audit log of attempts and the lockouts counted from it. Every attempt lands in the audit log; guesses
(mistyped, unknown or forged codes, a rider trying codes that are not their delivery's) count towards a lockout of
the store, the device and the principal (the store and device only when the caller works at that store, so nobody
can lock another merchant out). Ops unlock."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.redemption.errors import CheckDigitFailed, CodeNotFound, LockedOut, TokenNotValid, WrongOrder
from services.redemption.models import Attempt, Code, Lockout
from services.redemption.scanning import Presented
from services.redemption.settings import RedemptionSettings
from shared.auth import Principal
from shared.clock import Clock
from shared.errors import ServiceError
from shared.tenancy import covers_store


def actor_of(principal: Principal) -> str:
    """How the audit log and the ledger name who acted: `<role>:<sub>`."""
    return f"{principal.role.value}:{principal.sub}"


# Refusals that look like guessing (or a rider trying codes that are not their delivery's): they count towards a
# lockout.
GUESSES = (CheckDigitFailed, CodeNotFound, TokenNotValid, WrongOrder)


def lockout_scopes(principal: Principal, presented: Presented) -> list[tuple[str, str]]:
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


async def _locked(session: AsyncSession, scopes: list[tuple[str, str]], now: datetime) -> Lockout | None:
    if not scopes:
        return None
    return await session.scalar(
        select(Lockout)
        .where(or_(*[and_(Lockout.scope == s, Lockout.key == k) for s, k in scopes]), Lockout.locked_until > now)
        .limit(1)
    )


async def refuse_if_locked(
    session: AsyncSession, scopes: list[tuple[str, str]], now: datetime, settings: RedemptionSettings
) -> None:
    if await _locked(session, scopes, now) is not None:
        raise LockedOut(
            "Too many failed attempts here; ask ops to unlock or wait", retry_after_minutes=settings.lockout_minutes
        )


async def audit(
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


async def record_refusal(
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
    await audit(session, principal, presented, action, refusal.code, guess, now, code, request_no, counted)
    if guess:
        await _count_failure(session, scopes, now, settings)


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
