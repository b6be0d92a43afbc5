"""Sends customers' notices: a WeChat subscribe message on a grant, else an SMS stand-in where the merchant chose one.

A notice is recorded once per order state by the event handlers (`record_notice`). One round of the courier
(`send_due`) claims due notices in one statement (`FOR UPDATE SKIP LOCKED`, marked `sending` with a lease); each is then
sent with no transaction open, and its outcome recorded with its attempts by one statement (`FINISH`, `RETRY`, only
while the notice is still `sending`):
- a grant is spent and noted on the notice (`grants.spend`, conditional, one statement) before WeChat is called;
  WeChat's 43101 marks it invalid and the notice falls back to SMS; a message that never left, or whose fields
  WeChat refused, gives its grant back;
- SMS only for the notices the merchant's template allows it for, within the customer's daily cap;
- a passing failure (no connection, a 5xx, WeChat busy) is tried again after 2^attempt seconds, at most
  `notice_max_attempts` times; a refusal that would repeat (a bad template, a blacklisted number) fails at once;
- a call whose outcome is unknown (the answer timed out, or the sender died mid-call and its lease ran out) is
  recorded `unknown` and not sent again: a customer is told at most once.
Every try is a `notice_attempt` row: channel, template, result, the provider's code; phone numbers masked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, cast

import asyncpg
from sqlalchemy import Table, bindparam, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.notify import grants
from services.notify.channels.sms import masked
from services.notify.models import Notice, NoticeAttempt, NoticeTemplate, OrderView
from services.notify.notices import SHANGHAI, Occasion, base_facts
from services.notify.settings import NotifySettings
from shared.clock import Clock
from shared.db import pooled_driver, work_in_rounds

log = logging.getLogger(__name__)

NOTICE_CHANNEL = "songda_notice"
# When the next pending notice falls due (`ix_notice_due`).
NEXT_DUE = "SELECT min(next_attempt_at) FROM notice WHERE status = 'pending'"
# A notice's attempts ($2, a JSON array in order) recorded with its outcome, if it is still the sender's to settle.
_ATTEMPTS = (
    "WITH attempt AS (INSERT INTO notice_attempt (notice_id, channel, template_id, result, error_code, error,"
    " recipient, at) SELECT $1, a.channel, a.template_id, a.result, a.error_code, a.error, a.recipient, a.at"
    " FROM ROWS FROM (jsonb_to_recordset($2::text::jsonb) AS (channel text, template_id text, result text,"
    " error_code text, error text, recipient text, at timestamptz)) WITH ORDINALITY"
    " AS a(channel, template_id, result, error_code, error, recipient, at, n) ORDER BY a.n) "
)
# Finished: status, channel, detail, sent_at.
FINISH = _ATTEMPTS + (  # noqa: S608 - constants only
    "UPDATE notice SET status = $3, channel = $4, detail = $5, lease_until = NULL, next_attempt_at = NULL,"
    " sent_at = $6 WHERE id = $1 AND status = 'sending'"
)
# Due again: detail, next_attempt_at.
RETRY = _ATTEMPTS + (  # noqa: S608 - constants only
    "UPDATE notice SET status = 'pending', detail = $3, lease_until = NULL, next_attempt_at = $4"
    " WHERE id = $1 AND status = 'sending'"
)
# One more SMS for a customer on a day, unless the cap is reached (then no row).
TAKE_SMS = (
    "INSERT INTO sms_daily_count (customer_id, day, sent) VALUES ($1, $2, 1) ON CONFLICT (customer_id, day)"
    " DO UPDATE SET sent = sms_daily_count.sent + 1 WHERE sms_daily_count.sent < $3 RETURNING sent"
)


_NOTICE = cast(Table, Notice.__table__)
_NOTICE_FIELDS = ("id", "order_id", "key", "kind", "merchant_id", "store_id", "customer_id", "facts", "status",
                  "detail", "next_attempt_at", "created_at")  # fmt: skip
_record = (
    insert(_NOTICE)
    .values({name: bindparam(name) for name in _NOTICE_FIELDS})
    .on_conflict_do_nothing(index_elements=[_NOTICE.c.order_id, _NOTICE.c.key])
)
# A notice for a state of an order, once; a pending one wakes the courier (at commit) from the same statement, only when
# it was recorded. Built once: every notice is one.
_RECORD_PENDING = _record.returning(_NOTICE.c.id, func.pg_notify(NOTICE_CHANNEL, ""))
_RECORD_SUPPRESSED = _record.returning(_NOTICE.c.id)
# The courier's round, one statement (atomic by itself, outside any transaction): the notices whose sender stopped
# mid-call (their lease ran out) given up as `unknown`, an attempt noted for each; then the due ones claimed (`sending`,
# under a lease, `FOR UPDATE SKIP LOCKED` so two couriers never take the same), each with its order's view and its
# merchant's template for it. $1 now, $2 the lease's end, $3 the batch size. (A session with a statement each for the
# give-up, the claim, the orders and the templates had cost more than sending.)
_ROUND = (
    "WITH abandoned AS ("
    " UPDATE notice SET status = 'unknown', lease_until = NULL, detail = 'the sender stopped mid-call'"
    " WHERE status = 'sending' AND lease_until < $1 RETURNING id, channel"
    "), noted AS ("
    " INSERT INTO notice_attempt (notice_id, channel, result, error, at)"
    " SELECT id, coalesce(channel, 'wechat'), 'unknown', 'the sender stopped mid-call', $1 FROM abandoned"
    "), claimed AS ("
    " UPDATE notice SET status = 'sending', lease_until = $2, attempts = attempts + 1"
    " WHERE id IN (SELECT id FROM notice WHERE status = 'pending' AND next_attempt_at <= $1"
    " ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)"
    " RETURNING id, order_id, kind, merchant_id, store_id, customer_id, facts, attempts"
    ") SELECT c.id, c.order_id, c.kind, c.merchant_id, c.store_id, c.customer_id, c.facts::text AS facts, c.attempts,"
    " o.order_id IS NOT NULL AS has_order, o.status AS order_status, o.store_name, o.contact_phone,"
    " t.notice IS NOT NULL AS has_template, t.template_id, t.fields::text AS fields, t.page, t.sms_fallback,"
    " t.sms_template_id, t.sms_params::text AS sms_params"
    " FROM claimed c LEFT JOIN order_view o ON o.order_id = c.order_id"
    " LEFT JOIN notice_template t ON t.merchant_id = c.merchant_id AND t.notice = c.kind"
)


class Result(StrEnum):
    sent = "sent"
    no_grant = "no_grant"  # WeChat 43101: the user refused, or the grant was gone
    bad_field = "bad_field"  # WeChat 47003: a field's value does not fit its keyword
    refused = "refused"  # the provider refused for a reason a retry would meet again
    retry = "retry"  # the message did not leave, or the provider failed: try again later
    unknown = "unknown"  # it may have been delivered


@dataclass(frozen=True)
class Answer:
    result: Result
    code: str | None = None
    message: str | None = None


class WechatChannel(Protocol):
    async def send(self, *, openid: str, template_id: str, page: str | None, data: dict[str, str]) -> Answer: ...


class SmsChannel(Protocol):
    async def send(self, *, phone: str, template_id: str, params: list[str]) -> Answer: ...


async def record_notice(
    session: AsyncSession, order: OrderView, occasion: Occasion, *, at: datetime, now: datetime,
    suppressed_by: str | None = None,
) -> dict[str, str] | None:  # fmt: skip
    """Records the notice for this state of the order, once: its facts, or None when it was already recorded."""
    facts = base_facts(order_id=order.order_id, store_name=order.store_name, kind=occasion.kind, at=at)
    facts |= occasion.facts
    status, detail = ("suppressed", f"the carrier {suppressed_by} notifies the customer itself") if suppressed_by \
        else ("pending", None)  # fmt: skip
    recorded = await session.execute(
        _RECORD_PENDING if status == "pending" else _RECORD_SUPPRESSED,
        {"id": uuid.uuid4(), "order_id": order.order_id, "key": occasion.key, "kind": occasion.kind,
         "merchant_id": order.merchant_id, "store_id": order.store_id, "customer_id": order.customer_id,
         "facts": facts, "status": status, "detail": detail, "next_attempt_at": now if status == "pending" else None,
         "created_at": now},
    )  # fmt: skip
    return facts if recorded.first() is not None else None


@dataclass
class _Claimed:
    notice: Notice
    order: OrderView | None
    template: NoticeTemplate | None
    attempts: list[NoticeAttempt] = field(default_factory=list)

    @property
    def phone(self) -> str | None:
        return self.order.contact_phone if self.order is not None and self.order.contact_phone else None

    def facts(self) -> dict[str, str]:
        """The notice's facts, with the store's name as the order's own events tell it."""
        facts = dict(self.notice.facts)
        if self.order is not None and self.order.store_name:
            facts["store_name"] = self.order.store_name
        return facts


class Courier:
    def __init__(
        self,
        settings: NotifySettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock,
        wechat: WechatChannel,
        sms: SmsChannel,
        *,
        engine: AsyncEngine,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.wechat = wechat
        self.sms = sms
        # The statements outside any transaction run on a pooled connection without a session (shared.db.pooled_driver).
        self.engine = engine

    async def run(self) -> None:
        await work_in_rounds(self.engine, NOTICE_CHANNEL, self.send_due, batch_size=self.settings.notice_batch_size,
                             idle_seconds=self._idle_seconds)  # fmt: skip

    async def _idle_seconds(self) -> float:
        async with pooled_driver(self.engine) as connection:
            # One statement outside any transaction, after every round that did not fill a batch.
            next_due: datetime | None = await connection.fetchval(NEXT_DUE)
        ceiling = self.settings.notice_lease_seconds
        if next_due is None:
            return ceiling
        return min(max((next_due - self.clock.now()).total_seconds(), 0.05), ceiling)

    async def send_due(self) -> int:
        """One round: claims what is due, sends, records. Returns how many notices were handled."""
        claimed = await self._claim(self.clock.now())
        gate = asyncio.Semaphore(self.settings.notice_concurrency)

        async def handle(item: _Claimed) -> None:
            async with gate:
                try:
                    await self._deliver(item)
                except Exception as exc:  # its lease runs out and it is marked unknown: never sent twice
                    log.warning("notice failed mid-send", extra={"notice_id": str(item.notice.id),
                                                                  "error": repr(exc)})  # fmt: skip

        await asyncio.gather(*(handle(item) for item in claimed))
        return len(claimed)

    async def _claim(self, now: datetime) -> list[_Claimed]:
        """Gives up the notices whose sender stopped mid-call, and claims the due ones: one statement (`_ROUND`)."""
        lease = now + timedelta(seconds=self.settings.notice_lease_seconds)
        async with pooled_driver(self.engine) as connection:
            rows = await connection.fetch(_ROUND, now, lease, self.settings.notice_batch_size)
        return [_claimed(row) for row in rows]

    async def _deliver(self, item: _Claimed) -> None:
        notice, template = item.notice, item.template
        if template is None or not (template.template_id or (template.sms_fallback and template.sms_template_id)):
            await self._finish(item, "suppressed", None, "the merchant has no template for this notice")
            return
        if item.order is None or not item.order.status:
            await self._retry(item, "waiting for the order's own events")
            return
        if template.template_id:
            async with pooled_driver(self.engine) as connection:
                grant = await grants.spend(connection, openid=notice.customer_id,
                                           template_id=template.template_id, notice_id=notice.id,
                                           now=self.clock.now())  # fmt: skip
            if grant is None:
                self._note(item, "wechat", template.template_id, Answer(Result.no_grant, None, "no grant left"))
            else:
                answer = await self.wechat.send(
                    openid=notice.customer_id, template_id=template.template_id,
                    page=_page(template.page or self.settings.default_page, notice.order_id),
                    data={key: str(item.facts().get(fact, "")) for key, fact in template.fields.items()},
                )  # fmt: skip
                self._note(item, "wechat", template.template_id, answer)
                if answer.result == Result.sent:
                    await self._finish(item, "sent", "wechat", None)
                    return
                if answer.result == Result.unknown:
                    await self._finish(item, "unknown", "wechat", answer.message)
                    return
                await self._settle_grant(grant, notice.id, spent=answer.result == Result.no_grant)
                if answer.result == Result.retry:
                    await self._retry(item, answer.message)
                    return
        await self._fall_back_to_sms(item, template)

    async def _fall_back_to_sms(self, item: _Claimed, template: NoticeTemplate) -> None:
        notice = item.notice
        if not (template.sms_fallback and template.sms_template_id):
            await self._finish(item, "failed", None, "no grant left, and the merchant sends no SMS for this notice")
            return
        if not item.phone:
            await self._finish(item, "failed", None, "no phone number for the SMS stand-in")
            return
        if not await self._take_sms_allowance(notice.customer_id):
            self._note(item, "sms", template.sms_template_id, Answer(Result.refused, "daily_cap", "daily SMS cap"))
            await self._finish(item, "failed", None, "the customer's daily SMS cap is reached")
            return
        params = [str(item.facts().get(fact, "")) for fact in template.sms_params]
        answer = await self.sms.send(phone=item.phone, template_id=template.sms_template_id, params=params)
        self._note(item, "sms", template.sms_template_id, answer, recipient=masked(item.phone))
        if answer.result == Result.sent:
            await self._finish(item, "sent", "sms", None)
        elif answer.result == Result.retry:
            await self._retry(item, answer.message)
        elif answer.result == Result.unknown:
            await self._finish(item, "unknown", "sms", answer.message)
        else:
            await self._finish(item, "failed", "sms", f"{answer.code}: {answer.message}")

    async def _take_sms_allowance(self, customer_id: str) -> bool:
        """Counts one SMS against the customer's cap for today, if the cap allows it: one conditional upsert, outside
        any transaction."""
        day = self.clock.now().astimezone(SHANGHAI).date()
        async with pooled_driver(self.engine) as connection:
            taken: int | None = await connection.fetchval(TAKE_SMS, customer_id, day, self.settings.sms_daily_cap)
        return taken is not None and taken <= self.settings.sms_daily_cap

    async def _settle_grant(self, grant: uuid.UUID, notice_id: uuid.UUID, *, spent: bool) -> None:
        async with self.sessionmaker() as session, session.begin():
            if spent:
                await grants.invalidate(session, grant, self.clock.now())
            else:
                await grants.give_back(session, grant, notice_id)

    def _note(self, item: _Claimed, channel: str, template_id: str | None, answer: Answer,
              recipient: str | None = None) -> None:  # fmt: skip
        item.attempts.append(
            NoticeAttempt(notice_id=item.notice.id, channel=channel, template_id=template_id, result=answer.result,
                          error_code=answer.code, error=(answer.message or "")[:500] or None, recipient=recipient,
                          at=self.clock.now())
        )  # fmt: skip

    async def _finish(self, item: _Claimed, status: str, channel: str | None, detail: str | None) -> None:
        now = self.clock.now()
        await self._settle(FINISH, item, status, channel, detail, now if status == "sent" else None)

    async def _retry(self, item: _Claimed, detail: str | None) -> None:
        notice = item.notice
        if notice.attempts >= self.settings.notice_max_attempts:
            await self._finish(item, "failed", None, f"gave up after {notice.attempts} tries: {detail}")
            return
        wait = min(2.0**notice.attempts, self.settings.notice_max_backoff_seconds)
        await self._settle(RETRY, item, detail, self.clock.now() + timedelta(seconds=wait))

    async def _settle(self, statement: str, item: _Claimed, *values: object) -> None:
        """Records the notice's attempts and its outcome: one statement (atomic by itself) outside any transaction."""
        attempts = json.dumps([
            {"channel": a.channel, "template_id": a.template_id, "result": a.result, "error_code": a.error_code,
             "error": a.error, "recipient": a.recipient, "at": a.at.isoformat()}
            for a in item.attempts
        ])  # fmt: skip
        async with pooled_driver(self.engine) as connection:
            await connection.execute(statement, item.notice.id, attempts, *values)


def _claimed(row: asyncpg.Record) -> _Claimed:
    """A claimed notice, its order's view and its template as the courier reads them (loose objects, in no session)."""
    notice = Notice(id=row["id"], order_id=row["order_id"], kind=row["kind"], merchant_id=row["merchant_id"],
                    store_id=row["store_id"], customer_id=row["customer_id"], facts=json.loads(row["facts"]),
                    attempts=row["attempts"])  # fmt: skip
    order = None
    if row["has_order"]:
        order = OrderView(order_id=row["order_id"], status=row["order_status"], store_name=row["store_name"],
                          contact_phone=row["contact_phone"])  # fmt: skip
    template = None
    if row["has_template"]:
        template = NoticeTemplate(
            merchant_id=row["merchant_id"], notice=row["kind"], template_id=row["template_id"],
            fields=json.loads(row["fields"]), page=row["page"], sms_fallback=row["sms_fallback"],
            sms_template_id=row["sms_template_id"], sms_params=json.loads(row["sms_params"]),
        )  # fmt: skip
    return _Claimed(notice, order, template)


def _page(page: str, order_id: str) -> str:
    separator = "&" if "?" in page else "?"
    return f"{page}{separator}order={order_id}"
