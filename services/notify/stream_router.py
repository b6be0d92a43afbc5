"""Live streams (Server-Sent Events) of one order (its customer, the store's staff) and of one store (its staff):
status changes, the delivery's progress with rider and ETA, code redemptions and after-sales steps.

Each entry's `id` is its number on that stream; a browser reconnecting with `Last-Event-ID` (or `?after=`) gets
everything after it, in order, then what comes. Who may watch is checked when the stream opens. An idle stream sends
a keep-alive comment every `stream_ping_seconds`; an order's stream ends with `event: end` once the order reaches a
final state. Entries come from the database (`streams`), woken by NOTIFY (`hub`), so any replica serves any stream
and a connection holds one page of entries at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy import select

from services.notify import streams
from services.notify.access import Reader
from services.notify.errors import OrderNotFound, StoreNotFound
from services.notify.hub import StreamHub
from services.notify.models import OrderView, StoreStream
from services.notify.settings import NotifySettings
from shared.auth import Principal, Role
from shared.tenancy import covers_store

router = APIRouter(prefix="/v1/notifications/streams", tags=["streams"])

LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", max_length=20, pattern=r"^[0-9]*$")]
After = Annotated[int | None, Query(ge=0, description="Resume after this entry (what `Last-Event-ID` says)")]


async def _watched_order(order_id: Annotated[str, Path(max_length=64)], principal: Reader, request: Request) -> str:
    """The order, if the caller may watch it: checked before the stream's first byte."""
    async with request.app.state.sessionmaker() as session:
        order = await session.scalar(select(OrderView).where(OrderView.order_id == order_id))
    if order is None or not _may_watch_order(principal, order):
        raise OrderNotFound()
    return order_id


async def _watched_store(store_id: Annotated[str, Path(max_length=64)], principal: Reader, request: Request) -> str:
    async with request.app.state.sessionmaker() as session:
        merchant_id = await session.scalar(select(StoreStream.merchant_id).where(StoreStream.store_id == store_id))
    if merchant_id is None or principal.role == Role.customer or not covers_store(principal, merchant_id, store_id):
        raise StoreNotFound()
    return store_id


@router.get("/orders/{order_id}", response_class=EventSourceResponse, summary="Follow one order live")
async def order_stream(
    order_id: Annotated[str, Depends(_watched_order)], request: Request, last_event_id: LastEventId = None,
    after: After = None,
) -> AsyncIterator[ServerSentEvent]:  # fmt: skip
    async for item in _follow(request, "order", order_id, _resume_from(last_event_id, after)):
        yield item


@router.get("/stores/{store_id}", response_class=EventSourceResponse, summary="Follow one store's orders live")
async def store_stream(
    store_id: Annotated[str, Depends(_watched_store)], request: Request, last_event_id: LastEventId = None,
    after: After = None,
) -> AsyncIterator[ServerSentEvent]:  # fmt: skip
    async for item in _follow(request, "store", store_id, _resume_from(last_event_id, after)):
        yield item


def _may_watch_order(principal: Principal, order: OrderView) -> bool:
    if principal.order_id is not None and principal.order_id != order.order_id:
        return False  # a tracking link's principal watches its one order
    if principal.role == Role.customer:
        return principal.sub == order.customer_id
    if principal.role == Role.rider:
        return False
    return covers_store(principal, order.merchant_id, order.store_id)


def _hub(request: Request) -> StreamHub:
    """This replica's hub, started with its first stream (the engine exists once the app has started)."""
    state = request.app.state
    if getattr(state, "stream_hub", None) is None:
        state.stream_hub = StreamHub(state.engine)
    hub: StreamHub = state.stream_hub
    return hub


def _resume_from(last_event_id: str | None, after: int | None) -> int:
    if last_event_id:
        return int(last_event_id)
    return after or 0


async def _follow(request: Request, scope: streams.Scope, key: str, last: int) -> AsyncIterator[ServerSentEvent]:
    settings: NotifySettings = request.app.state.settings
    hub = _hub(request)
    yield ServerSentEvent(comment="stream open", retry=settings.stream_retry_ms)
    async with hub.subscribe(f"{scope}:{key}") as rung:
        while True:
            rung.clear()
            async with request.app.state.sessionmaker() as session:
                entries = await streams.after(session, scope, key, last, settings.stream_page_size)
            for entry in entries:
                last = streams.seq_of(entry, scope)
                yield ServerSentEvent(data=entry.data, event=entry.type, id=str(last))
                if scope == "order" and entry.terminal:
                    yield ServerSentEvent(data={"order_id": key}, event="end", id=str(last))
                    return
            if len(entries) == settings.stream_page_size:
                continue
            try:
                await asyncio.wait_for(rung.wait(), settings.stream_ping_seconds)
            except TimeoutError:
                yield ServerSentEvent(comment="ping")
