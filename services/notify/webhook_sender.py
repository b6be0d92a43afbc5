"""Delivers webhook messages to merchants' endpoints, on Standard Webhooks' retry schedule.

One round (`send_due`): claim due deliveries of enabled endpoints (`FOR UPDATE SKIP LOCKED`, marked `sending`
with a lease) and commit; make the HTTP calls with no transaction open, to the address checked against SSRF
(`shared.egress`), without following redirects; then record each attempt and its outcome in a new transaction:
- 2xx: `succeeded`; the endpoint's failure streak ends;
- 410 Gone: the endpoint is disabled; its other deliveries wait (a merchant re-enabling it resumes them);
- anything else (3xx included), or no answer: tried again after the schedule's next step (or `Retry-After`, when
  longer), with jitter; after the last step the delivery is `failed`. An endpoint failing without a success for
  longer than `webhook_disable_after_hours` is disabled.
A sender that dies mid-call leaves a `sending` row whose lease runs out: it is tried again (at least once; the
receiver dedupes on `webhook-id`, as the standard asks).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import ColumnClause, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.notify.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookMessage
from services.notify.settings import NotifySettings
from services.notify.webhooks import WEBHOOK_CHANNEL, Secrets, body_of, signature_header
from shared.clock import Clock
from shared.db import work_in_rounds, written_out
from shared.egress import EgressRefused, resolve

log = logging.getLogger(__name__)

# The states the due and abandoned deliveries are looked for in, written out, so that the generic plans use their
# partial indexes.
PENDING: ColumnClause[str] = written_out("pending")
SENDING: ColumnClause[str] = written_out("sending")

# The sender's statements that look for deliveries by their state, built once, each naming the state by one of the
# literals above, so that its generic plan uses that state's partial index (tests/notify/test_webhook_sender_plans.py).
# When the next pending delivery is due: the sender sleeps until then at most.
_NEXT_DUE = (
    select(WebhookDelivery.next_attempt_at)
    .where(WebhookDelivery.status == PENDING)
    .order_by(WebhookDelivery.next_attempt_at)
    .limit(1)
)
# Up to a batch of the deliveries due at `now` to enabled endpoints, the earliest first, claimed: `sending` until
# `lease`, one attempt more.
_DUE = (
    select(WebhookDelivery.id)
    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
    .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= bindparam("now"),
           WebhookEndpoint.disabled_at.is_(None))
    .order_by(WebhookDelivery.next_attempt_at)
    .limit(bindparam("batch"))
    .with_for_update(of=WebhookDelivery, skip_locked=True)
)  # fmt: skip
_CLAIM = (
    update(WebhookDelivery)
    .where(WebhookDelivery.id.in_(_DUE.scalar_subquery()))
    .values(status="sending", lease_until=bindparam("lease"), attempts=WebhookDelivery.attempts + 1)
    .returning(WebhookDelivery.id, WebhookDelivery.attempts)
)
# The deliveries whose sender died mid-call (their lease ran out at `now`), pending again and due at once.
_RECLAIM_ABANDONED = (
    update(WebhookDelivery)
    .where(WebhookDelivery.status == SENDING, WebhookDelivery.lease_until < bindparam("now"))
    .values(status="pending", next_attempt_at=bindparam("now"), lease_until=None)
)


@dataclass
class Outcome:
    status_code: int | None
    error: str | None
    excerpt: str | None
    duration_ms: int
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender:
    def __init__(
        self,
        settings: NotifySettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock,
        http: httpx.AsyncClient,
        secrets: Secrets,
        engine: AsyncEngine | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.http = http
        self.secrets = secrets
        self.engine = engine

    async def run(self) -> None:
        assert self.engine is not None
        await work_in_rounds(self.engine, WEBHOOK_CHANNEL, self.send_due, batch_size=self.settings.webhook_batch_size,
                             idle_seconds=self._idle_seconds)  # fmt: skip

    async def _idle_seconds(self) -> float:
        async with self.sessionmaker() as session:
            next_due = await session.scalar(_NEXT_DUE)
        ceiling = self.settings.webhook_lease_seconds
        if next_due is None:
            return ceiling
        return min(max((next_due - self.clock.now()).total_seconds(), 0.05), ceiling)

    async def send_due(self) -> int:
        """One round: claims what is due, calls, records. Returns how many deliveries were attempted."""
        now = self.clock.now()
        await self._reclaim_abandoned(now)
        async with self.sessionmaker() as session, session.begin():
            lease = now + timedelta(seconds=self.settings.webhook_lease_seconds)
            values = {"now": now, "batch": self.settings.webhook_batch_size, "lease": lease}
            claimed = (await session.execute(_CLAIM, values)).all()
            if not claimed:
                return 0
            rows = (
                await session.execute(
                    select(WebhookDelivery, WebhookMessage, WebhookEndpoint)
                    .join(WebhookMessage, WebhookMessage.id == WebhookDelivery.message_id)
                    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                    .where(WebhookDelivery.id.in_([row[0] for row in claimed]))
                )
            ).all()
            calls = [(d.id, d.attempts, m, e, self.secrets.signing(e, now)) for d, m, e in rows]
        gate = asyncio.Semaphore(self.settings.webhook_concurrency)

        async def deliver(call: tuple[uuid.UUID, int, WebhookMessage, WebhookEndpoint, list[str]]) -> None:
            delivery_id, attempt, message, endpoint, secrets = call
            async with gate:
                outcome = await self._call(endpoint, message, secrets)
            await self._record(delivery_id, endpoint.id, attempt, outcome)

        await asyncio.gather(*(deliver(call) for call in calls))
        return len(calls)

    async def _reclaim_abandoned(self, now: datetime) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(_RECLAIM_ABANDONED, {"now": now})

    async def _call(self, endpoint: WebhookEndpoint, message: WebhookMessage, secrets: list[str]) -> Outcome:
        body = body_of(message)
        sent_at = self.clock.now()
        headers = {
            "content-type": "application/json",
            "user-agent": "Songda-Webhooks/1",
            "webhook-id": message.id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature_header(secrets, message.id, sent_at, body),
        }
        started = time.monotonic()
        try:
            target = await resolve(endpoint.url, allow_private=self.settings.webhook_allow_private_targets)
            url, pinned_headers, extensions = target.pinned()
            response = await self.http.post(
                url, content=body.encode(), headers=headers | pinned_headers, extensions=extensions,
                timeout=self.settings.webhook_timeout_seconds, follow_redirects=False,
            )  # fmt: skip
        except EgressRefused as exc:
            return Outcome(None, f"refused: {exc}", None, _ms(started))
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:500], None, _ms(started))
        return Outcome(response.status_code, None, response.text[:500], _ms(started), _retry_after(response))

    async def _record(self, delivery_id: uuid.UUID, endpoint_id: uuid.UUID, attempt: int, outcome: Outcome) -> None:
        now = self.clock.now()
        async with self.sessionmaker() as session, session.begin():
            session.add(WebhookAttempt(delivery_id=delivery_id, attempt=attempt, at=now,
                                       status_code=outcome.status_code, error=outcome.error,
                                       response_excerpt=outcome.excerpt, duration_ms=outcome.duration_ms))  # fmt: skip
            delivery = await session.get_one(WebhookDelivery, delivery_id, with_for_update=True)
            endpoint = await session.get_one(WebhookEndpoint, endpoint_id, with_for_update=True)
            if delivery.status != "sending":
                return  # a replay or an operator moved it meanwhile
            delivery.lease_until = None
            delivery.last_status_code = outcome.status_code
            delivery.last_error = outcome.error
            if outcome.succeeded:
                delivery.status, delivery.finished_at, delivery.next_attempt_at = "succeeded", now, None
                endpoint.failing_since = None
                return
            endpoint.failing_since = endpoint.failing_since or now
            if outcome.status_code == 410:
                self._disable(endpoint, now, "the endpoint answered 410 Gone")
            elif now - endpoint.failing_since > timedelta(hours=self.settings.webhook_disable_after_hours):
                self._disable(endpoint, now, "failing without a success for too long")
            schedule = self.settings.webhook_schedule_seconds
            if attempt >= len(schedule) or endpoint.disabled_at is not None:
                delivery.status, delivery.finished_at, delivery.next_attempt_at = "failed", now, None
                return
            wait = schedule[attempt] * random.uniform(1.0, 1.1)  # noqa: S311 - jitter, not a secret
            if outcome.retry_after is not None:
                wait = max(wait, outcome.retry_after)
            delivery.status, delivery.next_attempt_at = "pending", now + timedelta(seconds=wait)

    @staticmethod
    def _disable(endpoint: WebhookEndpoint, now: datetime, reason: str) -> None:
        if endpoint.disabled_at is None:
            endpoint.disabled_at, endpoint.disabled_reason, endpoint.updated_at = now, reason, now
            log.warning("webhook endpoint disabled", extra={"endpoint_id": str(endpoint.id), "reason": reason})


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None or response.status_code not in (429, 503):
        return None
    try:
        return min(max(float(value), 0.0), 86400.0)
    except ValueError:
        return None
