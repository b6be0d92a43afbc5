"""Carrier callback intake: find the offer, verify with its account, keep, acknowledge; applied by the queue.

A callback is trusted only once the account bound to the offer it names has verified it: the offer is found first
(by our `shop_order_id`, else the carrier's waybill), then the callback must verify with that offer's own account,
so one merchant's account never vouches for another merchant's delivery and binding someone else's app key changes
nothing. A WeChat safe-mode push names its order only inside its ciphertext: it is opened by the bound account whose
token signed it, and must then verify with the account of the offer it names too. On top of the signature:
- a report whose action time is beyond now plus `callback_clock_skew_seconds` is refused (it would make every later
  genuine report stale);
- a WeChat push (whose signature never covers the body) older or newer than `push_max_age_seconds` is refused, and so
  is a nonce already seen with another body; the same push again is acknowledged and changes nothing;
- a carrier whose scheme has no secret (Dada) or does not cover the body (WeChat legacy) is only a prompt: applying
  queries the carrier and applies its answer.
Not JSON, not an object, no order named: 400; unknown order: 404; too large: 413, each in the carrier's own error
body. A verified callback is kept whole (minus the query parameters that authenticate it) and acknowledged: one
insert once its offer is known (`KnownOffers`; the first callback about an offer reads the offer with its account in
one more statement). Applying it (locking the delivery, the guard, events) happens right after, by the apply worker
that takes kept callbacks as a queue (services/dispatch/callback_queue.py), so a slow apply never makes a carrier
retry, and a crash in between loses nothing. A refused one keeps only its digest, size and a bounded prefix, and is
pruned after `refused_retention_days` by the repeating `callback.prune` timer (armed once, by the migration that
made callbacks a queue).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import asyncpg
from sqlalchemy import ColumnClause, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.dispatch import accounts
from services.dispatch.carriers import WIRES
from services.dispatch.carriers.base import Credentials, MalformedCallback, Message, SignatureInvalid, Update, Wire
from services.dispatch.domain import Verdict
from services.dispatch.models import CallbackNonce, CarrierAccount, CarrierCallback, Delivery, Offer
from services.dispatch.service import Dispatcher
from shared.db import driver_connection, pooled_driver, written_out
from shared.timers import schedule_timer

log = logging.getLogger(__name__)

# Retries of a callback whose apply failed (the first apply is the queue's).
APPLY_TIMER = "callback.apply"
PRUNE_TIMER = "callback.prune"
MAX_ATTEMPTS = 5
KEPT_HEADERS = ("content-type", "user-agent", "x-forwarded-for", "x-request-id", "content-length")
# Query parameters that authenticate a callback: checked on arrival, never kept nor shown.
AUTH_PARAMS = frozenset({"signature", "msg_signature", "sign", "nonce", "timestamp", "access_token"})
REFUSED = frozenset({"rejected", "malformed", "unknown", "too_large"})


class Refused(Exception):
    """A callback turned away at the door: its outcome, the HTTP status, and the reason (None: the carrier's own
    signature-error text)."""

    def __init__(self, outcome: str, status: int, reason: str | None) -> None:
        super().__init__(reason or outcome)
        self.outcome, self.status, self.reason = outcome, status, reason


# The outcome of a callback kept and not yet applied, written out in the statements that look for such callbacks, so
# that their generic plans use the partial index of pending callbacks.
PENDING: ColumnClause[str] = written_out("pending")

# A confirm-by-query carrier's callback about an offer that still waits for its query (built once).
_WAITING_FOR_QUERY = (
    select(CarrierCallback.id)
    .where(CarrierCallback.offer_id == bindparam("offer_id"), CarrierCallback.outcome == PENDING)
    .limit(1)
    .with_for_update(skip_locked=True)
)


async def receive(
    session: AsyncSession,
    dispatcher: Dispatcher,
    known: KnownOffers,
    carrier: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    *,
    complete: bool = True,
) -> Message:
    """Verifies and keeps a callback (or its refusal); returns what to answer the carrier. `complete` is False when
    the body was cut at `callback_max_body_bytes`."""
    wire = WIRES[carrier]
    settings = dispatcher.settings
    now = dispatcher.clock.now()
    digest = hashlib.sha256(body).hexdigest()
    message = Message(params=query, body=body)
    try:
        if not complete:
            raise Refused("too_large", 413, f"the body exceeds {settings.callback_max_body_bytes} bytes")
        try:
            offer, creds = await _owner(session, dispatcher, known, wire, message)
            report = wire.decode_callback(message, creds, now)
        except SignatureInvalid as error:
            raise Refused("rejected", wire.reject_status, None) from error
        except MalformedCallback as error:
            raise Refused("malformed", 400, str(error)) from error
        _refuse_if_ahead(report, now, settings.callback_clock_skew_seconds)
        if await _seen(session, dispatcher, wire, message, digest):
            return wire.ack_message()
    except Refused as refusal:
        log.info("callback refused", extra={"carrier": carrier, "outcome": refusal.outcome, "reason": str(refusal)})
        prefix = settings.refused_prefix_bytes
        session.add(
            CarrierCallback(
                id=uuid.uuid4(), carrier=carrier, query=_kept(query, prefix), headers=_headers(headers, prefix),
                body=body[:prefix], body_sha256=digest, body_size=len(body), received_at=now,
                outcome=refusal.outcome, error=str(refusal)[:500], processed_at=now,
            )
        )  # fmt: skip
        return wire.reject_message(refusal.reason, refusal.status)
    kept = body
    if wire.confirm_by_query:
        # Anyone can make such a callback: it only prompts a status query, so it is kept like a refusal (digest and
        # prefix), and one still waiting for its query stands for every later one about the same offer (one being
        # applied is locked, and skipped: its query may be older than this news).
        kept = body[: settings.refused_prefix_bytes]
        waiting = await session.scalar(_WAITING_FOR_QUERY, {"offer_id": offer.id})
        if waiting is not None:
            return wire.ack_message()
    # After a lookup or a nonce, the keeping joins the request's transaction.
    await _keep(await driver_connection(session), carrier, query, headers, kept, digest, len(body), now, offer)
    return wire.ack_message()


async def receive_remembered(
    engine: AsyncEngine,
    dispatcher: Dispatcher,
    known: KnownOffers,
    carrier: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
) -> Message | None:
    """The common case, without a session (whose machinery cost a quarter of the intake's CPU): a callback of a
    carrier that signs its body, about a remembered offer, verified and kept in one statement that commits by itself.
    None, with nothing written, when it needs `receive`: an offer to look up, a push to open or to check for a
    replay, a status to query, or a refusal to record."""
    wire = WIRES[carrier]
    message = Message(params=query, body=body)
    if wire.confirm_by_query or wire.sealed(message) or wire.callback_stamp(message) is not None:
        return None
    now = dispatcher.clock.now()
    try:
        remembered = known.get(_ref(wire, wire.read_callback(message, None)))
        if remembered is None:
            return None
        offer, creds = remembered
        _refuse_if_ahead(
            wire.decode_callback(message, creds, now), now, dispatcher.settings.callback_clock_skew_seconds
        )
    except (SignatureInvalid, MalformedCallback, Refused):
        return None
    async with pooled_driver(engine) as connection:
        await _keep(connection, carrier, query, headers, body, hashlib.sha256(body).hexdigest(), len(body), now, offer)
    return wire.ack_message()


def _refuse_if_ahead(report: Update, now: datetime, skew_seconds: int) -> None:
    """A report whose action time is beyond now plus the allowed skew would make every later genuine one stale."""
    ahead = report.action_time - now
    if ahead > timedelta(seconds=skew_seconds):
        raise Refused("rejected", 400, f"the action time is {int(ahead.total_seconds())} s ahead of now")


async def _keep(
    connection: asyncpg.Connection, carrier: str, query: dict[str, str], headers: dict[str, str], kept: bytes,
    digest: str, size: int, now: datetime, offer: Owner,
) -> None:  # fmt: skip
    """One statement on the driver: no SQLAlchemy statement to build (building the ORM insert's values was a third of
    the intake's CPU). Outside a transaction it commits by itself, durable before the ack. Its trigger wakes the apply
    worker."""
    await connection.execute(
        KEEP, uuid.uuid4(), carrier, json.dumps(_kept(query, None)), json.dumps(_headers(headers, None)), kept, digest,
        size, now, offer.delivery_id, offer.id,
    )  # fmt: skip


# Every verified callback is kept by this one statement, so each is kept `pending` (the apply worker's queue).
KEEP = (
    "INSERT INTO carrier_callback (id, carrier, query, headers, body, body_sha256, body_size, received_at, outcome,"
    " delivery_id, offer_id, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, 0)"
)


class Owner(NamedTuple):
    """The offer a callback names (by id), and its delivery."""

    id: uuid.UUID
    delivery_id: uuid.UUID


class KnownOffers:
    """The offers callbacks named, with the credentials of the accounts that placed them, remembered (the `size` most
    recently named): an offer's id, delivery and account never change, nor a bound account's secrets (binding again
    makes a new account), so a carrier's later callbacks about an offer are verified without a lookup. What names no
    offer is never remembered (the offer may be placed a moment later)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._known: OrderedDict[tuple[str, str, str], tuple[Owner, Credentials]] = OrderedDict()

    def get(self, ref: tuple[str, str, str]) -> tuple[Owner, Credentials] | None:
        found = self._known.get(ref)
        if found is not None:
            self._known.move_to_end(ref)
        return found

    def put(self, ref: tuple[str, str, str], owner: tuple[Owner, Credentials]) -> None:
        self._known[ref] = owner
        if len(self._known) > self.size:
            self._known.popitem(last=False)


def _ref(wire: Wire, fields: Mapping[str, Any]) -> tuple[str, str, str]:
    """How a callback names its offer: by our order id when it gives it, else by the carrier's waybill."""
    shop_order_id, waybill_id = wire.callback_refs(fields)
    return wire.name, shop_order_id, "" if shop_order_id else waybill_id


async def _owner(
    session: AsyncSession, dispatcher: Dispatcher, known: KnownOffers, wire: Wire, message: Message
) -> tuple[Owner, Credentials]:
    """The offer the callback is about and the credentials of the account that placed it."""
    appid = dispatcher.settings.wechat_appid
    if wire.sealed(message):
        fields = None
        now = dispatcher.clock.now()
        for candidate in await accounts.with_push_key(session, wire.name):
            try:
                fields = wire.open_callback(message, accounts.credentials(dispatcher.vault, candidate, appid), now)
                break
            except SignatureInvalid:
                continue
        if fields is None:
            raise SignatureInvalid("no bound account's key opens this push")
    else:
        fields = wire.read_callback(message, None)
    ref = _ref(wire, fields)
    remembered = known.get(ref)
    if remembered is not None:
        return remembered
    _, shop_order_id, waybill_id = ref
    by = Offer.shop_order_id == shop_order_id if shop_order_id else Offer.waybill_id == waybill_id
    found = (
        await session.execute(
            select(Offer.id, Offer.delivery_id, CarrierAccount)
            .join(CarrierAccount, CarrierAccount.id == Offer.account_id)
            .where(Offer.carrier == wire.name, by)
            .limit(1)
        )
    ).first()
    if found is None:
        raise Refused("unknown", 404, "no offer with this order or waybill")
    offer_id, delivery_id, account = found
    owner = Owner(offer_id, delivery_id), accounts.credentials(dispatcher.vault, account, appid)
    known.put(ref, owner)
    return owner


async def _seen(session: AsyncSession, dispatcher: Dispatcher, wire: Wire, message: Message, digest: str) -> bool:
    """For schemes whose signature leaves the body out: refuses a stale push and a nonce seen with another body;
    True for a repeat of a push already taken (the carrier retrying)."""
    stamp = wire.callback_stamp(message)
    if stamp is None:
        return False
    nonce, timestamp = stamp
    now = dispatcher.clock.now()
    if not nonce or not timestamp.isdigit():
        raise Refused("rejected", wire.reject_status, "no nonce or timestamp")
    if abs(now.timestamp() - int(timestamp)) > dispatcher.settings.push_max_age_seconds:
        raise Refused("rejected", wire.reject_status, "the push is not fresh")
    stored = await session.scalar(
        insert(CallbackNonce)
        .values(carrier=wire.name, nonce=nonce, body_sha256=digest, seen_at=now)
        .on_conflict_do_nothing()
        .returning(CallbackNonce.nonce)
    )
    if stored is not None:
        return False
    earlier = await session.scalar(
        select(CallbackNonce.body_sha256).where(CallbackNonce.carrier == wire.name, CallbackNonce.nonce == nonce)
    )
    if earlier != digest:
        raise Refused("rejected", wire.reject_status, "the nonce was used by another push")
    return True


def _kept(query: dict[str, str], limit: int | None) -> dict[str, str]:
    kept = {key: value for key, value in query.items() if key.lower() not in AUTH_PARAMS}
    if limit is None:
        return kept
    return {key[:64]: value[:128] for key, value in list(kept.items())[:16] if len(key) + len(value) <= limit}


def _headers(headers: dict[str, str], limit: int | None) -> dict[str, str]:
    kept = {key: value for key, value in headers.items() if key.lower() in KEPT_HEADERS}
    return kept if limit is None else {key: value[:256] for key, value in kept.items()}


async def apply(session: AsyncSession, dispatcher: Dispatcher, callback_id: uuid.UUID) -> CarrierCallback:
    """Applies one kept callback now (an ops replay, a retry after a failure), whatever its outcome so far."""
    callback = await session.scalar(select(CarrierCallback).where(CarrierCallback.id == callback_id).with_for_update())
    if callback is None:
        raise LookupError(f"no callback {callback_id}")
    if callback.outcome in REFUSED:
        return callback  # never verified: nothing to apply
    offer = await session.get(Offer, callback.offer_id) if callback.offer_id else None
    delivery = None
    if offer is not None and offer.account_id is not None:
        delivery = await dispatcher.locked(session, offer.delivery_id)
    account = await dispatcher.account(session, offer) if offer is not None else None
    await settle(session, dispatcher, callback, await applied(session, dispatcher, callback, offer, account, delivery))
    return callback


class Kept(NamedTuple):
    """A kept callback as the apply worker claims it: what applying and recording it read (no ORM object)."""

    id: uuid.UUID
    seq: int
    carrier: str
    query: dict[str, str]
    body: bytes
    offer_id: uuid.UUID | None
    attempts: int


async def applied(
    session: AsyncSession,
    dispatcher: Dispatcher,
    callback: CarrierCallback | Kept,
    offer: Offer | None,
    account: CarrierAccount | None,
    delivery: Delivery | None,
    *,
    isolated: bool = True,
    opened: dict[uuid.UUID, Credentials] | None = None,
) -> Verdict | Exception | None:
    """What applying a verified callback to its offer's delivery (held under its row lock by the caller) came to: the
    guard's verdict, the error that undid it (its savepoint rolled back), or None when no offer was recorded. A
    carrier whose callbacks prove nothing has its status queried instead. Not `isolated`, there is no savepoint and an
    error is raised, undoing the caller's whole transaction (the apply worker's rounds, which then apply each callback
    isolated). `opened` keeps accounts' opened credentials across calls (the worker's round)."""
    if offer is None or account is None or delivery is None:
        return None
    if not isolated:
        return await _apply_report(session, dispatcher, callback, offer, account, delivery, opened)
    try:
        async with session.begin_nested():
            return await _apply_report(session, dispatcher, callback, offer, account, delivery, opened)
    except Exception as error:  # kept visible as `failed`, retried a few times, then left to ops to replay
        log.warning("callback failed", extra={"callback_id": str(callback.id), "error": repr(error)})
        return error


async def _apply_report(
    session: AsyncSession,
    dispatcher: Dispatcher,
    callback: CarrierCallback | Kept,
    offer: Offer,
    account: CarrierAccount,
    delivery: Delivery,
    opened: dict[uuid.UUID, Credentials] | None,
) -> Verdict:
    wire = WIRES[callback.carrier]
    if wire.confirm_by_query:
        report: Update = await dispatcher.ask(session, offer)
    else:
        creds = opened.get(account.id) if opened is not None else None
        if creds is None:
            creds = accounts.credentials(dispatcher.vault, account, dispatcher.settings.wechat_appid)
            if opened is not None:
                opened[account.id] = creds
        report = wire.report(wire.read_callback(Message(params=callback.query, body=callback.body), creds))
    return await dispatcher.apply(session, delivery, offer, report, "callback")


def _outcome(result: Verdict | Exception | None) -> tuple[str, str | None, int]:
    """What applying came to, as the callback records it: its outcome, its error, and whether it was an apply."""
    if result is None:
        return "unknown", "no offer recorded", 0
    if isinstance(result, Exception):
        return "failed", repr(result)[:1000], 1
    return str(result), None, 1


async def _retry_later(session: AsyncSession, dispatcher: Dispatcher, callback_id: uuid.UUID, attempts: int) -> None:
    """A failed apply is tried again after a backoff, up to `MAX_ATTEMPTS` applies in all."""
    if attempts < MAX_ATTEMPTS:
        due = dispatcher.clock.now() + timedelta(seconds=2**attempts)
        await schedule_timer(session, kind=APPLY_TIMER, key=f"{callback_id}#{attempts}", due_at=due)


async def settle(
    session: AsyncSession, dispatcher: Dispatcher, callback: CarrierCallback, result: Verdict | Exception | None
) -> None:
    """Records what applying came to; a failure is retried after a backoff, up to `MAX_ATTEMPTS` applies."""
    callback.outcome, callback.error, tried = _outcome(result)
    callback.processed_at = dispatcher.clock.now()
    callback.attempts += tried
    if isinstance(result, Exception):
        await _retry_later(session, dispatcher, callback.id, callback.attempts)


async def settle_all(
    session: AsyncSession, dispatcher: Dispatcher, results: Sequence[tuple[Kept, Verdict | Exception | None]]
) -> None:
    """Records what applying a round's callbacks came to, as `settle` does, in one statement on the driver (in the
    round's transaction, which its claim began)."""
    if not results:
        return
    for callback, result in results:
        if isinstance(result, Exception):
            await _retry_later(session, dispatcher, callback.id, callback.attempts + 1)
    ids, outcomes, errors, tried = zip(*((c.id, *_outcome(result)) for c, result in results), strict=True)
    await (await driver_connection(session)).execute(_SETTLE, ids, outcomes, errors, tried, dispatcher.clock.now())


_SETTLE = (
    "UPDATE carrier_callback SET outcome = s.outcome, error = s.error, attempts = carrier_callback.attempts + s.tried,"
    " processed_at = $5 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[]) AS s(id, outcome, error, tried)"
    " WHERE carrier_callback.id = s.id"
)


async def prune(session: AsyncSession, dispatcher: Dispatcher) -> None:
    """Deletes refused callbacks past their retention, every settled one past the longer retention of callbacks, and
    push nonces past the freshness window; runs again after `callback_prune_minutes`."""
    settings = dispatcher.settings
    now = dispatcher.clock.now()
    await session.execute(
        delete(CarrierCallback).where(
            CarrierCallback.outcome.in_(REFUSED),
            CarrierCallback.received_at < now - timedelta(days=settings.refused_retention_days),
        )
    )
    await session.execute(
        delete(CarrierCallback).where(
            CarrierCallback.outcome != "pending",
            CarrierCallback.received_at < now - timedelta(days=settings.callback_retention_days),
        )
    )
    await session.execute(
        delete(CallbackNonce).where(CallbackNonce.seen_at < now - timedelta(seconds=2 * settings.push_max_age_seconds))
    )
    due = now + timedelta(minutes=settings.callback_prune_minutes)
    await schedule_timer(session, kind=PRUNE_TIMER, key="callbacks", due_at=due)


def callback_id(timer_key: str) -> uuid.UUID:
    return uuid.UUID(timer_key.split("#", 1)[0])


async def page(
    session: AsyncSession, *, outcome: str | None, carrier: str | None, delivery_id: uuid.UUID | None, offset: int,
    limit: int,
) -> tuple[int, Sequence[CarrierCallback]]:  # fmt: skip
    """Callbacks as received (ops), newest first, filtered as asked, and how many match in all."""
    conditions = []
    if outcome:
        conditions.append(CarrierCallback.outcome == outcome)
    if carrier:
        conditions.append(CarrierCallback.carrier == carrier)
    if delivery_id:
        conditions.append(CarrierCallback.delivery_id == delivery_id)
    total = await session.scalar(select(func.count()).select_from(CarrierCallback).where(*conditions))
    rows = await session.scalars(
        select(CarrierCallback)
        .where(*conditions)
        .order_by(CarrierCallback.received_at.desc())
        .offset(offset)
        .limit(limit)
    )
    return int(total or 0), rows.all()
