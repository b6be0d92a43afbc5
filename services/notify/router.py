"""Routes of the customer-facing and staff notify API (through the gateway): grants (`/v1/subscriptions`), the
in-app inbox (`/v1/notifications`), the merchant's notice templates and the record of every notice sent
(`/v1/notifications/templates`, `/v1/notifications/notices`)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import func, select

from services.notify import grants, inbox
from services.notify.access import Customer, MerchantQuery, Reader, Staff, merchant_of, refuse_one_order
from services.notify.errors import NoticeNotFound, NotificationNotFound, TooManyGrants
from services.notify.models import Notice, NoticeAttempt, NoticeTemplate, SubscribeGrant
from services.notify.notices import NoticeKind
from services.notify.schemas import (
    GrantBalance,
    InboxItemRead,
    InboxPage,
    NoticeAttemptRead,
    NoticeRead,
    ReadAnswer,
    SubscriptionAnswer,
    SubscriptionReport,
    TemplateRead,
    TemplateUpdate,
)
from services.notify.settings import NotifySettings
from shared.clock import AppClock
from shared.contract import Offset
from shared.db import DbSession
from shared.errors import ValidationFailed
from shared.tenancy import require_tenant, store_conditions

router = APIRouter(prefix="/v1", tags=["notify"])

Limit = Annotated[int, Query(ge=1, le=100)]


def _settings(request: Request) -> NotifySettings:
    settings: NotifySettings = request.app.state.settings
    return settings


# --- subscriptions ---------------------------------------------------------------------------------------------


@router.post("/subscriptions", response_model=SubscriptionAnswer, summary="Record what the customer granted")
async def report_subscriptions(
    body: SubscriptionReport, principal: Customer, session: DbSession, clock: AppClock, request: Request
) -> SubscriptionAnswer:
    """The mini-program forwards `wx.requestSubscribeMessage`'s result: each `accept` is one message the merchant
    may send on that template (a standing grant for templates whose category allows long-term subscriptions)."""
    settings = _settings(request)
    now = clock.now()
    recorded = 0
    for template_id, status in sorted(body.results.items()):
        if status != "accept":
            continue  # declining this prompt leaves earlier grants as they were
        if await grants.open_count(session, principal.sub, template_id) >= settings.max_open_grants:
            raise TooManyGrants(template_id=template_id, limit=settings.max_open_grants)
        recorded += await grants.record_accept(
            session, openid=principal.sub, template_id=template_id, source="client", at=now,
            long_term=template_id in settings.long_term_templates,
            match_window=timedelta(seconds=settings.grant_match_seconds),
        )  # fmt: skip
    await session.flush()
    return SubscriptionAnswer(recorded=recorded, balances=await _balances(session, principal.sub))


@router.get("/subscriptions", response_model=SubscriptionAnswer, summary="The customer's grants left")
async def my_subscriptions(principal: Customer, session: DbSession) -> SubscriptionAnswer:
    refuse_one_order(principal)
    return SubscriptionAnswer(recorded=0, balances=await _balances(session, principal.sub))


async def _balances(session: DbSession, openid: str) -> list[GrantBalance]:
    rows = await session.execute(
        select(
            SubscribeGrant.template_id,
            func.count().filter(SubscribeGrant.long_term.is_(False), SubscribeGrant.consumed_at.is_(None)),
            func.bool_or(SubscribeGrant.long_term),
        )
        .where(SubscribeGrant.openid == openid, SubscribeGrant.invalid_at.is_(None))
        .group_by(SubscribeGrant.template_id)
        .order_by(SubscribeGrant.template_id)
    )
    return [GrantBalance(template_id=t, open_grants=n, long_term=bool(lt)) for t, n, lt in rows]


# --- the in-app inbox ------------------------------------------------------------------------------------------


@router.get("/notifications", response_model=InboxPage, summary="The caller's in-app notifications")
async def list_notifications(
    principal: Reader, session: DbSession, unread: bool = False, limit: Limit = 20, offset: Offset = 0
) -> InboxPage:
    """A customer's notices, or (staff) what their merchant's stores must act on; newest first, with the count of
    all unread."""
    require_tenant(principal)
    refuse_one_order(principal)
    items, unread_count = await inbox.page(session, principal, unread_only=unread, limit=limit, offset=offset)
    return InboxPage(items=[InboxItemRead.model_validate(i, from_attributes=True) for i in items],
                     unread=unread_count, limit=limit, offset=offset)  # fmt: skip


@router.post("/notifications/read", response_model=ReadAnswer, summary="Mark all the caller's notifications read")
async def read_all(principal: Reader, session: DbSession, clock: AppClock) -> ReadAnswer:
    return ReadAnswer(marked=await inbox.mark_read(session, principal, None, clock.now()))


# --- templates and the record of notices -----------------------------------------------------------------------


@router.get("/notifications/templates", response_model=list[TemplateRead], summary="The merchant's notice templates")
async def list_templates(principal: Staff, session: DbSession, merchant_id: MerchantQuery = None) -> list[TemplateRead]:
    merchant = merchant_of(principal, merchant_id)
    rows = await session.scalars(
        select(NoticeTemplate).where(NoticeTemplate.merchant_id == merchant).order_by(NoticeTemplate.notice)
    )
    return [TemplateRead.model_validate(row, from_attributes=True) for row in rows]


@router.put("/notifications/templates/{notice}", response_model=TemplateRead, summary="Set how a notice is sent")
async def put_template(
    notice: NoticeKind, body: TemplateUpdate, principal: Staff, session: DbSession, clock: AppClock,
    merchant_id: MerchantQuery = None,
) -> TemplateRead:  # fmt: skip
    merchant = merchant_of(principal, merchant_id)
    if body.template_id is None and not body.sms_fallback:
        raise ValidationFailed("Give a template_id, or turn sms_fallback on with an sms_template_id")
    if body.sms_fallback and not body.sms_template_id:
        raise ValidationFailed("sms_fallback needs an sms_template_id")
    if body.template_id and not body.fields:
        raise ValidationFailed("Map at least one of the template's keywords to a fact in `fields`")
    row = await session.get(NoticeTemplate, (merchant, notice.value), with_for_update=True)
    if row is None:
        row = NoticeTemplate(merchant_id=merchant, notice=notice.value)
        session.add(row)
    for name, value in body.model_dump().items():
        setattr(row, name, value)
    row.updated_by, row.updated_at = f"{principal.role.value}:{principal.sub}", clock.now()
    await session.flush()
    return TemplateRead.model_validate(row, from_attributes=True)


@router.get("/notifications/notices", response_model=list[NoticeRead], summary="Notices sent to customers")
async def list_notices(
    principal: Staff, session: DbSession, order_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None, limit: Limit = 50, offset: Offset = 0,
) -> list[NoticeRead]:  # fmt: skip
    """Every notice with every attempt (channel, template, result, the provider's error): the merchant's staff see
    their stores', ops all."""
    require_tenant(principal)
    conditions = store_conditions(principal, Notice.merchant_id, Notice.store_id)
    if order_id:
        conditions.append(Notice.order_id == order_id)
    if status:
        conditions.append(Notice.status == status)
    rows = list(await session.scalars(
        select(Notice).where(*conditions).order_by(Notice.created_at.desc(), Notice.id).limit(limit).offset(offset)
    ))  # fmt: skip
    return await _notice_reads(session, rows)


@router.get("/notifications/notices/{notice_id}", response_model=NoticeRead, summary="One notice and its attempts")
async def get_notice(notice_id: uuid.UUID, principal: Staff, session: DbSession) -> NoticeRead:
    require_tenant(principal)
    row = await session.scalar(
        select(Notice).where(Notice.id == notice_id, *store_conditions(principal, Notice.merchant_id, Notice.store_id))
    )
    if row is None:
        raise NoticeNotFound()
    return (await _notice_reads(session, [row]))[0]


async def _notice_reads(session: DbSession, rows: list[Notice]) -> list[NoticeRead]:
    attempts: dict[uuid.UUID, list[NoticeAttemptRead]] = {row.id: [] for row in rows}
    for attempt in await session.scalars(
        select(NoticeAttempt).where(NoticeAttempt.notice_id.in_(attempts)).order_by(NoticeAttempt.id)
    ):
        attempts[attempt.notice_id].append(NoticeAttemptRead.model_validate(attempt, from_attributes=True))
    return [
        NoticeRead(id=r.id, order_id=r.order_id, kind=r.kind, key=r.key, store_id=r.store_id, status=r.status,
                   channel=r.channel, detail=r.detail, attempts=attempts[r.id], created_at=r.created_at,
                   sent_at=r.sent_at)
        for r in rows
    ]  # fmt: skip


# The item routes come last: `/notifications/templates` and `/notifications/notices` are not item ids.
@router.post("/notifications/{item_id}/read", response_model=ReadAnswer, summary="Mark one notification read")
async def read_one(
    item_id: Annotated[uuid.UUID, Path()], principal: Reader, session: DbSession, clock: AppClock
) -> ReadAnswer:
    if await inbox.find(session, principal, item_id) is None:
        raise NotificationNotFound()
    return ReadAnswer(marked=await inbox.mark_read(session, principal, item_id, clock.now()))
