"""Who may call the notify API for what: the roles of each route, and the merchant a staff caller acts for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from shared.auth import Principal, Role, require_roles
from shared.errors import Forbidden, ValidationFailed
from shared.tenancy import covers_merchant, require_tenant

Customer = Annotated[Principal, require_roles(Role.customer)]
Reader = Annotated[Principal, require_roles(Role.customer, Role.merchant, Role.rider, Role.ops, Role.service)]
Staff = Annotated[Principal, require_roles(Role.merchant, Role.ops, Role.service)]
MerchantQuery = Annotated[str | None, Query(max_length=64, description="Ops: the merchant")]


def refuse_one_order(principal: Principal) -> None:
    """A tracking link's principal (its customer's, limited to one order) may not read the rest of the account: the
    inbox and the grants are the customer's across all orders."""
    if principal.order_id is not None:
        raise Forbidden("A tracking link's token reads its own order only")


def merchant_of(principal: Principal, merchant_id: str | None) -> str:
    """The merchant the staff caller acts for: their own (admin only: no store scope), or, for ops, the one named."""
    if principal.role in (Role.ops, Role.service):
        if not merchant_id:
            raise ValidationFailed("Name the merchant: ?merchant_id=")
        return merchant_id
    require_tenant(principal)
    if merchant_id and not covers_merchant(principal, merchant_id):
        raise Forbidden("Not your merchant")
    if principal.store_ids:
        raise Forbidden("Only the merchant's admin (a token for all its stores) manages notices and webhooks")
    assert principal.merchant_id is not None
    return principal.merchant_id
