"""What a scan presents (a typed numeric code or a QR token, and where), the code it names or a guess-type refusal
(mistyped, unknown, forged or stale), and whether the caller may redeem that code: merchant staff their merchant's
codes at its stores, a rider only the finish code of the order dispatch's handover voucher names
(shared/handover.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.redemption import codes
from services.redemption.errors import (
    CheckDigitFailed,
    CodeNotFound,
    HandoverRequired,
    TokenNotValid,
    WrongOrder,
    WrongStore,
)
from services.redemption.issuing import qr_secret
from services.redemption.models import Code
from shared.auth import Principal, Role
from shared.errors import Forbidden, ValidationFailed
from shared.handover import Voucher
from shared.tenancy import covers_merchant, covers_store
from shared.vault import Vault


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


async def resolve(session: AsyncSession, vault: Vault, presented: Presented, now: datetime, *, lock: bool) -> Code:
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


def check_voucher(principal: Principal, voucher: Voucher | None) -> None:
    """A rider redeems only through dispatch's handover, with a voucher naming this very rider."""
    if principal.role is not Role.rider:
        return
    if voucher is None:
        raise HandoverRequired("Riders redeem a finish code through the handover of their task (dispatch)")
    if voucher.rider_id != principal.sub or voucher.merchant_id != principal.merchant_id:
        raise HandoverRequired("The handover voucher is for another rider")


def authorise(principal: Principal, code: Code, store_id: str | None, voucher: Voucher | None) -> None:
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
        assert voucher is not None  # check_voucher ran first
        if code.kind != "finish" or code.order_id != voucher.order_id:
            raise WrongOrder("This is not the finish code of the order you are handing over")
    if store_id is not None and store_id != code.store_id:
        raise WrongStore(f"This code is for store {code.store_id}", code_store_id=code.store_id)
    if principal.role is not Role.rider and store_id is None:
        raise ValidationFailed("store_id is required")
