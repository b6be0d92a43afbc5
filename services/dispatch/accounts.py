"""Carrier accounts per store: bind, unbind, list; secrets sealed in the vault and never returned."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.carriers import WIRES
from services.dispatch.carriers.base import Credentials
from services.dispatch.errors import AccountNotFound, AccountTaken, UnknownCarrier
from services.dispatch.models import CarrierAccount
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.errors import Forbidden, NotFound, ValidationFailed
from shared.tenancy import covers_store, require_tenant, store_conditions
from shared.vault import Vault


def merchant_scope(principal: Principal, merchant_id: str | None) -> str:
    """The merchant a staff member acts for: their own; ops name one."""
    if principal.role is Role.ops:
        if not merchant_id:
            raise ValidationFailed("merchant_id is required for ops")
        return merchant_id
    if principal.role is not Role.merchant or not principal.merchant_id:
        raise Forbidden("Only merchant staff and ops manage carrier accounts")
    return principal.merchant_id


def check_store(principal: Principal, merchant_id: str, store_id: str) -> None:
    """A store outside the caller's scope (another store of a store-scoped staff's merchant) is not found."""
    if not covers_store(principal, merchant_id, store_id):
        raise NotFound(f"No store {store_id}")


async def bind(
    session: AsyncSession,
    vault: Vault,
    clock: Clock,
    principal: Principal,
    *,
    merchant_id: str,
    store_id: str,
    carrier: str,
    app_key: str,
    app_secret: str,
    shop_id: str,
    merchant_no: str,
    token: str,
    brand: str | None,
    encoding_aes_key: str = "",
) -> CarrierAccount:
    if carrier not in WIRES:
        raise UnknownCarrier(f"No carrier {carrier!r}; known: {', '.join(WIRES)}")
    wire = WIRES[carrier]
    fleet = (brand or wire.brand).upper()
    if not fleet:
        raise ValidationFailed(f"{carrier} needs `brand`: the fleet behind it (DADA, SFTC, SS, MTPS)")
    check_store(principal, merchant_id, store_id)
    account_id = uuid.uuid4()
    account = CarrierAccount(
        id=account_id,
        merchant_id=merchant_id,
        store_id=store_id,
        carrier=carrier,
        brand=fleet,
        app_key=app_key,
        secret_sealed=vault.seal(app_secret, str(account_id)),
        token_sealed=vault.seal(token, str(account_id)) if token else None,
        aes_key_sealed=vault.seal(encoding_aes_key, str(account_id)) if encoding_aes_key else None,
        shop_id=shop_id,
        merchant_no=merchant_no,
        bound_by=principal.sub,
        bound_at=clock.now(),
    )
    session.add(account)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as error:
        if "dada_merchant" in str(error.orig):
            raise AccountTaken(
                f"Dada merchant account {merchant_no} is already bound through another channel; unbind it first"
            ) from error
        raise AccountTaken(f"Store {store_id} already has a {carrier} account; unbind it first") from error
    return account


async def unbind(session: AsyncSession, clock: Clock, principal: Principal, account_id: uuid.UUID) -> None:
    require_tenant(principal)
    conditions = [
        CarrierAccount.id == account_id,
        CarrierAccount.unbound_at.is_(None),
        *store_conditions(principal, CarrierAccount.merchant_id, CarrierAccount.store_id),
    ]
    done = await session.scalar(
        update(CarrierAccount).where(*conditions).values(unbound_at=clock.now()).returning(CarrierAccount.id)
    )
    if done is None:
        raise AccountNotFound("No such carrier account")


async def store_accounts(session: AsyncSession, merchant_id: str, store_id: str) -> list[CarrierAccount]:
    return list(
        (
            await session.scalars(
                select(CarrierAccount)
                .where(
                    CarrierAccount.merchant_id == merchant_id,
                    CarrierAccount.store_id == store_id,
                    CarrierAccount.unbound_at.is_(None),
                )
                .order_by(CarrierAccount.carrier)
            )
        ).all()
    )


async def with_push_key(session: AsyncSession, carrier: str) -> list[CarrierAccount]:
    """Bound accounts that take encrypted pushes: a sealed push names its order only inside, so the account whose
    token signed it is found among these before its order (which that account must then own) can be read."""
    return list(
        (
            await session.scalars(
                select(CarrierAccount).where(
                    CarrierAccount.carrier == carrier,
                    CarrierAccount.aes_key_sealed.is_not(None),
                    CarrierAccount.unbound_at.is_(None),
                )
            )
        ).all()
    )


def credentials(vault: Vault, account: CarrierAccount, appid: str = "") -> Credentials:
    """The account's secrets, opened; `appid` is the mini-program's (WeChat's safe-mode pushes carry it)."""
    bound_to = str(account.id)
    return Credentials(
        app_key=account.app_key,
        app_secret=vault.open(account.secret_sealed, bound_to),
        shop_id=account.shop_id,
        merchant_no=account.merchant_no,
        token=vault.open(account.token_sealed, bound_to) if account.token_sealed else "",
        brand=account.brand,
        aes_key=vault.open(account.aes_key_sealed, bound_to) if account.aes_key_sealed else "",
        appid=appid,
    )
