"""The in-app inbox: what a customer was told, and what a merchant's staff must act on, read or not.

A customer's items are theirs by their id; a merchant's belong to the merchant and name their store, so
store-scoped staff see only their stores' (`shared.tenancy.store_conditions`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, false, func, select, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import InboxItem
from shared.auth import Principal, Role
from shared.tenancy import store_conditions

_ITEM = cast(Table, InboxItem.__table__)
_FIELDS = ("id", "audience", "recipient", "store_id", "order_id", "kind", "dedupe_key", "title", "body", "created_at")
# Built once: every event that tells someone something adds an item.
_ADD = (
    insert(_ITEM)
    .values({name: bindparam(name) for name in _FIELDS})
    .on_conflict_do_nothing(index_elements=[_ITEM.c.audience, _ITEM.c.recipient, _ITEM.c.dedupe_key])
)


async def add(
    session: AsyncSession, *, audience: str, recipient: str, store_id: str | None, order_id: str | None, kind: str,
    dedupe_key: str, title: str, body: str, now: datetime,
) -> None:  # fmt: skip
    await session.execute(
        _ADD,
        {"id": uuid.uuid4(), "audience": audience, "recipient": recipient, "store_id": store_id, "order_id": order_id,
         "kind": kind, "dedupe_key": dedupe_key, "title": title, "body": body, "created_at": now},
    )  # fmt: skip


def owned_by(principal: Principal) -> list[ColumnElement[bool]]:
    """The caller's items: a customer's own; staff's merchant's (their stores only, when store-scoped)."""
    if principal.role == Role.customer:
        return [InboxItem.audience == "customer", InboxItem.recipient == principal.sub]
    if principal.role == Role.merchant:
        return [InboxItem.audience == "merchant",
                *store_conditions(principal, InboxItem.recipient, InboxItem.store_id)]  # fmt: skip
    return [false()]  # riders, ops and services have no inbox of their own


async def page(
    session: AsyncSession, principal: Principal, *, unread_only: bool, limit: int, offset: int
) -> tuple[list[InboxItem], int]:
    """The caller's items, newest first, and how many are unread."""
    mine = owned_by(principal)
    unread_filter = InboxItem.read_at.is_(None) if unread_only else true()
    items = await session.scalars(
        select(InboxItem).where(*mine, unread_filter)
        .order_by(InboxItem.created_at.desc(), InboxItem.id).limit(limit).offset(offset)
    )  # fmt: skip
    unread = await session.scalar(select(func.count()).where(*mine, InboxItem.read_at.is_(None)))
    return list(items), int(unread or 0)


async def mark_read(session: AsyncSession, principal: Principal, item_id: uuid.UUID | None, now: datetime) -> int:
    """Marks one of the caller's items (or, `item_id` None, all of them) read; returns how many changed."""
    conditions: list[Any] = [*owned_by(principal), InboxItem.read_at.is_(None)]
    if item_id is not None:
        conditions.append(InboxItem.id == item_id)
    result = await session.execute(update(InboxItem).where(*conditions).values(read_at=now))
    return int(getattr(result, "rowcount", 0) or 0)


async def find(session: AsyncSession, principal: Principal, item_id: uuid.UUID) -> InboxItem | None:
    item: InboxItem | None = await session.scalar(
        select(InboxItem).where(*owned_by(principal), InboxItem.id == item_id)
    )
    return item
