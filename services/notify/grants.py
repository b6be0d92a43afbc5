"""The subscribe-message grant ledger: one row per one-time grant a customer gave a template (or one standing row
for a long-term grant), spent one per message.

Grants are learnt twice over: from the mini-program, which forwards `wx.requestSubscribeMessage`'s result
(`POST /v1/subscriptions`), and from WeChat's `subscribe_msg_popup_event` push. The two reports of one popup are
matched (same customer and template, within `grant_match_seconds`) so they make one grant, whichever comes first.
A `reject` from the user's settings page (`subscribe_msg_change_event`) voids their open grants for the template.

Spending is a conditional update of the oldest open grant, skipping rows another sender holds, so two concurrent
sends never spend one grant. A long-term grant is never used up.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import SubscribeGrant


async def open_count(session: AsyncSession, openid: str, template_id: str) -> int:
    return int(
        await session.scalar(
            select(func.count()).where(
                SubscribeGrant.openid == openid,
                SubscribeGrant.template_id == template_id,
                SubscribeGrant.consumed_at.is_(None),
                SubscribeGrant.invalid_at.is_(None),
            )
        )
        or 0
    )


async def record_accept(
    session: AsyncSession, *, openid: str, template_id: str, source: str, at: datetime, long_term: bool,
    match_window: timedelta,
) -> bool:  # fmt: skip
    """Records one accepted popup; False when it was the other report of a grant already recorded."""
    other = "push" if source == "client" else "client"
    matched = await session.scalar(
        update(SubscribeGrant)
        .where(
            SubscribeGrant.id
            == select(SubscribeGrant.id)
            .where(
                SubscribeGrant.openid == openid, SubscribeGrant.template_id == template_id,
                SubscribeGrant.source == other, SubscribeGrant.matched.is_(False),
                SubscribeGrant.granted_at.between(at - match_window, at + match_window),
            )
            .order_by(SubscribeGrant.granted_at)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        .values(matched=True)
        .returning(SubscribeGrant.id)
    )  # fmt: skip
    if matched is not None:
        return False
    if long_term:
        standing = await session.scalar(
            select(SubscribeGrant.id).where(
                SubscribeGrant.openid == openid, SubscribeGrant.template_id == template_id,
                SubscribeGrant.long_term.is_(True), SubscribeGrant.invalid_at.is_(None),
            )
        )  # fmt: skip
        if standing is not None:
            return False
    session.add(SubscribeGrant(id=uuid.uuid4(), openid=openid, template_id=template_id, long_term=long_term,
                               source=source, granted_at=at))  # fmt: skip
    return True


async def void(session: AsyncSession, *, openid: str, template_id: str, at: datetime) -> int:
    """The user turned the template off: their open grants for it are void."""
    result = await session.execute(
        update(SubscribeGrant)
        .where(SubscribeGrant.openid == openid, SubscribeGrant.template_id == template_id,
               SubscribeGrant.consumed_at.is_(None), SubscribeGrant.invalid_at.is_(None))
        .values(invalid_at=at)
    )  # fmt: skip
    return int(getattr(result, "rowcount", 0) or 0)


# Takes a grant for notice $4's message and records it on the notice, in one statement (atomic by itself): a
# standing long-term grant, else the oldest open one-time grant, spent with a conditional update that skips rows
# another sender holds. No row when no grant is left.
SPEND = (
    "WITH standing AS (SELECT id FROM subscribe_grant WHERE openid = $1 AND template_id = $2 AND long_term"
    " AND invalid_at IS NULL LIMIT 1),"
    " spent AS (UPDATE subscribe_grant SET consumed_at = $3, consumed_by = $4 WHERE NOT EXISTS (SELECT FROM standing)"
    " AND consumed_at IS NULL AND id = (SELECT id FROM subscribe_grant WHERE openid = $1 AND template_id = $2"
    " AND NOT long_term AND consumed_at IS NULL AND invalid_at IS NULL ORDER BY granted_at, id LIMIT 1"
    " FOR UPDATE SKIP LOCKED) RETURNING id),"
    " chosen AS (SELECT id FROM standing UNION ALL SELECT id FROM spent),"
    " noted AS (UPDATE notice SET grant_id = chosen.id, channel = 'wechat' FROM chosen WHERE notice.id = $4)"
    " SELECT id FROM chosen"
)


async def spend(
    connection: asyncpg.Connection, *, openid: str, template_id: str, notice_id: uuid.UUID, now: datetime
) -> uuid.UUID | None:
    """Takes a grant for the notice's message, and notes it on the notice (channel `wechat`), outside any
    transaction. None when no grant is left."""
    spent: uuid.UUID | None = await connection.fetchval(SPEND, openid, template_id, now, notice_id)
    return spent


async def give_back(session: AsyncSession, grant_id: uuid.UUID, notice_id: uuid.UUID) -> None:
    """The message never reached WeChat (or WeChat refused its fields): the grant is unspent."""
    await session.execute(
        update(SubscribeGrant)
        .where(SubscribeGrant.id == grant_id, SubscribeGrant.consumed_by == notice_id)
        .values(consumed_at=None, consumed_by=None)
    )


async def invalidate(session: AsyncSession, grant_id: uuid.UUID, now: datetime) -> None:
    """WeChat answered 43101 for this grant: the user refused, or it was gone. Marked, never given back."""
    await session.execute(update(SubscribeGrant).where(SubscribeGrant.id == grant_id).values(invalid_at=now))
