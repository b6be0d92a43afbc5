"""Routes for carriers: the supported list, the per-store account vault, callback intake (public, authenticated by
the carrier's signature) and the callback log with replay for ops."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatch import accounts, callbacks
from services.dispatch.carriers import WIRES
from services.dispatch.errors import UnknownCarrier
from services.dispatch.models import CarrierAccount, CarrierCallback
from services.dispatch.schemas import AccountCreate, AccountRead, CallbackPage, CallbackRead, CarrierRead
from services.dispatch.service import app_dispatcher
from shared.auth import Principal, Role, require_roles
from shared.clock import AppClock
from shared.db import DbSession
from shared.errors import NotFound
from shared.http import bounded_body

router = APIRouter(tags=["carriers"])
Staff = Annotated[Principal, require_roles(Role.merchant, Role.ops)]
Ops = Annotated[Principal, require_roles(Role.ops)]


def _mask(key: str) -> str:
    return key[:3] + "*" * max(len(key) - 5, 3) + key[-2:] if len(key) > 5 else "***"


def account_read(account: CarrierAccount) -> AccountRead:
    return AccountRead(
        id=account.id, merchant_id=account.merchant_id, store_id=account.store_id, carrier=account.carrier,
        brand=account.brand, app_key=_mask(account.app_key), shop_id=account.shop_id,
        merchant_no=account.merchant_no, has_token=account.token_sealed is not None,
        safe_mode=account.aes_key_sealed is not None, bound_at=account.bound_at,
    )  # fmt: skip


@router.get("/v1/carriers", summary="The carriers Songda speaks to, with their money and coordinate conventions")
async def list_carriers() -> list[CarrierRead]:
    return [
        CarrierRead(
            name=wire.name,
            title=wire.title,
            brand=wire.brand,
            money="yuan" if wire.money_in_yuan else "fen",
            coordinates="BD-09" if wire.bd09 else "GCJ-02",
            operations=[op.value for op in wire.paths],
        )
        for wire in WIRES.values()
    ]


@router.post("/v1/carriers/accounts", status_code=201, summary="Bind a store's carrier account (secrets sealed)")
async def bind_account(
    request: Request, session: DbSession, clock: AppClock, principal: Staff, body: AccountCreate
) -> AccountRead:
    account = await accounts.bind(
        session,
        app_dispatcher(request).vault,
        clock,
        principal,
        merchant_id=accounts.merchant_scope(principal, body.merchant_id),
        store_id=body.store_id,
        carrier=body.carrier,
        app_key=body.app_key,
        app_secret=body.app_secret,
        shop_id=body.shop_id,
        merchant_no=body.merchant_no,
        token=body.token,
        brand=body.brand,
        encoding_aes_key=body.encoding_aes_key,
    )
    return account_read(account)


@router.get("/v1/carriers/accounts", summary="A store's bound carrier accounts (secrets never shown)")
async def list_accounts(
    session: DbSession, principal: Staff, store_id: str, merchant_id: str | None = None
) -> list[AccountRead]:
    scope = accounts.merchant_scope(principal, merchant_id)
    accounts.check_store(principal, scope, store_id)
    return [account_read(a) for a in await accounts.store_accounts(session, scope, store_id)]


@router.delete("/v1/carriers/accounts/{account_id}", status_code=204, summary="Unbind a carrier account")
async def unbind_account(session: DbSession, clock: AppClock, principal: Staff, account_id: uuid.UUID) -> Response:
    await accounts.unbind(session, clock, principal, account_id)
    return Response(status_code=204)


@router.post(
    "/v1/carriers/{carrier}/callback",
    summary="Carrier status callback (no JWT: verified with the account of the offer it names)",
    responses={
        200: {"description": "The carrier's acknowledgement body"},
        400: {"description": "Not the carrier's format, or an action time in the future (the carrier's error body)"},
        401: {"description": "Bad signature, stale push, reused nonce (the carrier's error body)"},
        404: {"description": "No offer with this order or waybill (the carrier's error body)"},
        413: {"description": "Body too large (the carrier's error body)"},
    },
)
async def carrier_callback(request: Request, carrier: str) -> Response:
    if carrier not in WIRES:
        raise UnknownCarrier(f"No carrier {carrier!r}")
    dispatcher = app_dispatcher(request)
    body, complete = await bounded_body(request, dispatcher.settings.callback_max_body_bytes)
    query, headers, known = dict(request.query_params), dict(request.headers), request.app.state.known_offers
    answer = None
    if complete:
        answer = await callbacks.receive_remembered(
            request.app.state.engine, dispatcher, known, carrier, query, headers, body
        )
    if answer is None:
        sessions: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
        # Its own transaction, committed before the answer as the request's would be, without the dependency's
        # machinery.
        async with sessions() as session, session.begin():
            answer = await callbacks.receive(
                session, dispatcher, known, carrier, query, headers, body, complete=complete
            )
    return Response(answer.body, status_code=answer.status, media_type="application/json")


@router.get("/v1/carriers/callbacks", summary="Callbacks as received, newest first (ops)")
async def list_callbacks(
    session: DbSession,
    _: Ops,
    outcome: str | None = None,
    carrier: str | None = None,
    delivery_id: uuid.UUID | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> CallbackPage:
    total, rows = await callbacks.page(
        session, outcome=outcome, carrier=carrier, delivery_id=delivery_id, offset=offset, limit=limit
    )
    return CallbackPage(items=[_callback_read(c) for c in rows], total=total)


def _callback_read(callback: CarrierCallback) -> CallbackRead:
    return CallbackRead(
        id=callback.id, carrier=callback.carrier, received_at=callback.received_at, outcome=callback.outcome,
        error=callback.error, delivery_id=callback.delivery_id, attempts=callback.attempts, query=callback.query,
        headers=callback.headers, body=callback.body.decode("utf-8", "replace"), body_sha256=callback.body_sha256,
        body_size=callback.body_size,
    )  # fmt: skip


@router.post("/v1/carriers/callbacks/{callback_id}/replay", summary="Apply a kept callback again, now (ops)")
async def replay_callback(request: Request, session: DbSession, _: Ops, callback_id: uuid.UUID) -> CallbackRead:
    try:
        callback = await callbacks.apply(session, app_dispatcher(request), callback_id)
    except LookupError as missing:
        raise NotFound("No such callback") from missing
    return _callback_read(callback)
