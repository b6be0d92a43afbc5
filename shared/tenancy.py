"""Tenant scoping in one place: which merchant and stores a caller may act for.

Every service asks these questions the same way, so a store-scoped staff token (`store_ids` listed) can't reach
another store of its merchant through a route that forgot to check. Ops and internal services see every tenant;
customers are scoped by their own id elsewhere (they own orders and codes, not stores).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import false

from shared.auth import Principal, Role
from shared.errors import Forbidden

_ALL_TENANTS = (Role.ops, Role.service)
_STAFF = (Role.merchant, Role.rider)


def covers_merchant(principal: Principal, merchant_id: str | None) -> bool:
    """The caller may act for this merchant (ops and services for any)."""
    if principal.role in _ALL_TENANTS:
        return True
    return principal.role in _STAFF and principal.merchant_id is not None and principal.merchant_id == merchant_id


def covers_store(principal: Principal, merchant_id: str | None, store_id: str | None) -> bool:
    """The caller may act for this store of this merchant: merchant-wide staff for all its stores, store-scoped staff
    (a token listing `store_ids`) only for those."""
    if principal.role in _ALL_TENANTS:
        return True
    if not covers_merchant(principal, merchant_id):
        return False
    return not principal.store_ids or store_id in principal.store_ids


def store_conditions(principal: Principal, merchant_column: Any, store_column: Any) -> list[Any]:
    """SQL conditions that keep a query to the caller's merchant and stores (none for ops and services). Callers
    that are neither staff nor all-tenant get a condition that matches nothing."""
    if principal.role in _ALL_TENANTS:
        return []
    if principal.role not in _STAFF or not principal.merchant_id:
        return [false()]
    conditions = [merchant_column == principal.merchant_id]
    if principal.store_ids:
        conditions.append(store_column.in_(principal.store_ids))
    return conditions


def require_tenant(principal: Principal) -> None:
    """Refuses a staff token that names no merchant: it may act for no store, and a 403 says so where an empty
    answer would not."""
    if principal.role in _STAFF and not principal.merchant_id:
        raise Forbidden("This staff token names no merchant")
