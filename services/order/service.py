"""Order use cases: place, read, and every move of the lifecycle. Each writes its outbox rows in the caller's
transaction and never commits; every status move goes through `move`, a conditional UPDATE on the status read."""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.dml import ReturningInsert

from services.order import domain, events, refunds
from services.order.catalogue import store_rules
from services.order.domain import Action, FulfilmentMode, OrderStatus
from services.order.domain import next_status as domain_next_status
from services.order.errors import (
    IdempotencyKeyReused,
    InvalidTransition,
    NotOrderable,
    OrderNotFound,
    OutOfStock,
    ShippingBlocked,
    StoreNotFound,
)
from services.order.models import CustomerOrder, OrderLine, OrderStatusChange, Payment, Product, Sku, Store
from services.order.schemas import OrderCreate, OrderLineRead, OrderRead, ShipCommand, StatusChangeRead
from services.order.settings import OrderSettings
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.contract import INT4_MAX
from shared.errors import Forbidden
from shared.events.models import Timer
from shared.tenancy import covers_store, require_tenant, store_conditions
from shared.timers import cancel_timer, schedule_timer

UNPAID_TIMER = "order.unpaid"
ACCEPT_TIMER = "order.accept_limit"
AUTO_COMPLETE_TIMER = "order.auto_complete"
CLOSE_TRADE_TIMER = "payment.close"


# --- reading and access -----------------------------------------------------------------------------------------


# What a tracking link's principal sees of the customer's address: its point, to about a hundred metres.
REDACTED_DECIMALS = 3


def may_see(principal: Principal, order: CustomerOrder) -> bool:
    """Customers see their own orders (a tracking link's principal only its one); merchant staff their merchant's,
    only their stores' if the token lists stores; ops and services all. Riders see deliveries, not orders."""
    if principal.order_id is not None and order.id != principal.order_id:
        return False
    if principal.role is Role.customer:
        return order.customer_id == principal.sub
    return principal.role is not Role.rider and covers_store(principal, order.merchant_id, order.store_id)


# What every order read and action runs, built once (a statement built per call cost more CPU than running it).
_ORDER_BY_ID = select(CustomerOrder).where(CustomerOrder.id == bindparam("order_id"))
LOCK_ORDER = _ORDER_BY_ID.with_for_update()


async def visible_order(
    session: AsyncSession, principal: Principal, order_id: str, *, lock: bool = False
) -> CustomerOrder:
    """The order if the principal may see it. Someone else's order is not found: a 403 would confirm it exists."""
    require_tenant(principal)
    order = await session.scalar(LOCK_ORDER if lock else _ORDER_BY_ID, {"order_id": order_id})
    if order is None or not may_see(principal, order):
        raise OrderNotFound(f"No order {order_id}")
    return order


# The pending timers an order shows as its deadlines: the field of the read schema each one fills.
DEADLINE_FIELDS = {ACCEPT_TIMER: "accept_by", AUTO_COMPLETE_TIMER: "auto_complete_by"}


# Orders' lines, for every order read (built once).
_LINES_OF = (
    select(OrderLine).where(OrderLine.order_id.in_(bindparam("order_ids", expanding=True))).order_by(OrderLine.id)
)
_DEADLINES_OF = select(Timer.kind, Timer.key, Timer.due_at).where(
    Timer.kind.in_(list(DEADLINE_FIELDS)),
    Timer.key.in_(bindparam("order_ids", expanding=True)),
    Timer.fired_at.is_(None),
    Timer.cancelled_at.is_(None),
)


async def order_reads(session: AsyncSession, principal: Principal, orders: Sequence[CustomerOrder]) -> list[OrderRead]:
    """The orders as the API shows them to the principal, their lines and pending deadlines loaded in one query each."""
    lines: dict[str, list[OrderLineRead]] = {order.id: [] for order in orders}
    for line in await session.scalars(_LINES_OF, {"order_ids": list(lines)}):
        lines[line.order_id].append(OrderLineRead.model_validate(line))
    deadlines: dict[str, dict[str, Any]] = {order.id: {} for order in orders}
    for kind, key, due_at in (await session.execute(_DEADLINES_OF, {"order_ids": list(lines)})).all():
        deadlines[key][DEADLINE_FIELDS[kind]] = due_at
    columns = CustomerOrder.__table__.columns
    reads = [
        OrderRead.model_validate(
            {**{c.key: getattr(o, c.key) for c in columns}, "items": lines[o.id], **deadlines[o.id]}
        )
        for o in orders
    ]
    return [_redacted(read) for read in reads] if principal.order_id is not None else reads


async def order_read(session: AsyncSession, principal: Principal, order: CustomerOrder) -> OrderRead:
    return (await order_reads(session, principal, [order]))[0]


def _redacted(read: OrderRead) -> OrderRead:
    """The order as a tracking link shows it: no address text, contact or note, the point rounded."""
    address = read.address and {
        "text": None,
        "lat": round(read.address["lat"], REDACTED_DECIMALS),
        "lng": round(read.address["lng"], REDACTED_DECIMALS),
    }
    return read.model_copy(
        update={"address": address, "contact": {"name": None, "phone": None}, "note": "", "redacted": True}
    )


def history_read(principal: Principal, change: OrderStatusChange) -> StatusChangeRead:
    """A status change as the principal sees it: a tracking link sees who moved the order by role only."""
    read = StatusChangeRead.model_validate(change)
    if principal.order_id is not None:
        read.actor = read.actor.partition(":")[0]
    return read


async def list_orders(
    session: AsyncSession,
    principal: Principal,
    *,
    status: str | None,
    store_id: str | None,
    offset: int,
    limit: int,
) -> tuple[list[OrderRead], int]:
    if principal.role is Role.rider:
        raise Forbidden("Riders see deliveries, not orders")
    require_tenant(principal)
    conditions: list[Any]
    if principal.role is Role.customer:
        conditions = [CustomerOrder.customer_id == principal.sub]
    else:
        conditions = store_conditions(principal, CustomerOrder.merchant_id, CustomerOrder.store_id)
    if principal.order_id is not None:
        conditions.append(CustomerOrder.id == principal.order_id)
    if status:
        conditions.append(CustomerOrder.status == status)
    if store_id:
        conditions.append(CustomerOrder.store_id == store_id)
    total = int(await session.scalar(select(func.count()).select_from(CustomerOrder).where(*conditions)) or 0)
    orders = (
        await session.scalars(
            select(CustomerOrder)
            .where(*conditions)
            .order_by(CustomerOrder.placed_at.desc(), CustomerOrder.id)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return await order_reads(session, principal, orders), total


async def status_history(session: AsyncSession, order: CustomerOrder) -> list[OrderStatusChange]:
    return list(
        await session.scalars(
            select(OrderStatusChange).where(OrderStatusChange.order_id == order.id).order_by(OrderStatusChange.id)
        )
    )


# --- the one way an order moves ---------------------------------------------------------------------------------


_ORDER = cast(Table, CustomerOrder.__table__)
_CHANGE = cast(Table, OrderStatusChange.__table__)


@functools.cache
def _move_statement(columns: tuple[str, ...]) -> ReturningInsert[tuple[str]]:
    """The move of an order writing these columns, and its record in the history, in one statement: the UPDATE is
    conditional on the status read (`from_status`), and the change is recorded only when it matched. Built once for
    each set of columns."""
    moved = (
        update(_ORDER)
        .where(_ORDER.c.id == bindparam("order_id"), _ORDER.c.status == bindparam("from_status"))
        .values({name: bindparam(f"new_{name}", type_=_ORDER.c[name].type) for name in columns})
        .returning(_ORDER.c.id)
        .cte("moved")
    )
    recorded = ("from_status", "to_status", "action", "actor", "at")
    return (
        insert(_CHANGE)
        .from_select(
            ["order_id", *recorded],
            select(moved.c.id, *(bindparam(name, type_=_CHANGE.c[name].type) for name in recorded)),
        )
        .returning(_CHANGE.c.order_id)
    )


async def move(
    session: AsyncSession, order: CustomerOrder, action: Action, *, actor: str, clock: Clock, **values: Any
) -> OrderStatus:
    """Moves the order by the transition table. The UPDATE is conditional on the status this transaction read, so
    of two racing requests one wins and the other gets a 409; `values` are written with the move, and the change is
    recorded in the order's history by the same statement."""
    current = OrderStatus(order.status)
    target = domain_next_status(action, current, FulfilmentMode(order.fulfilment_mode))
    now = clock.now()
    written = {"status": target.value, "updated_at": now, **values}
    moved = await session.scalar(
        _move_statement(tuple(written)),
        {"order_id": order.id, "from_status": current.value, "to_status": target.value, "action": action.value,
         "actor": actor, "at": now, **{f"new_{name}": value for name, value in written.items()}},
    )  # fmt: skip
    if moved is None:
        raise InvalidTransition(f"Order {order.id} changed while this request ran; read it again")
    # The row holds these now: the object is told so as loaded values, not changes its next flush would write again.
    for key, value in written.items():
        set_committed_value(order, key, value)
    return target


def actor_of(principal: Principal) -> str:
    return f"{principal.role.value}:{principal.sub}"


# --- placing ----------------------------------------------------------------------------------------------------


def _request_hash(command: OrderCreate) -> str:
    return hashlib.sha256(command.model_dump_json().encode()).hexdigest()


def new_order_id(clock: Clock) -> str:
    """`SD` + yymmdd + 16 random digits: sortable by day, unguessable, a valid WeChat Pay out_trade_no."""
    return f"SD{clock.now():%y%m%d}{secrets.randbelow(10**16):016d}"


@dataclass(frozen=True)
class Placed:
    order: CustomerOrder
    replayed: bool


async def place_order(
    session: AsyncSession,
    principal: Principal,
    command: OrderCreate,
    *,
    idempotency_key: str | None,
    clock: Clock,
    settings: OrderSettings,
) -> Placed:
    if principal.role is not Role.customer:
        raise Forbidden("Only customers place orders")
    request_hash = _request_hash(command)
    if idempotency_key:
        # Serialises requests with the same key: the second waits for the first's commit, then finds its order.
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"order-idem:{principal.sub}:{idempotency_key}"},
        )
        existing = await session.scalar(
            select(CustomerOrder).where(
                CustomerOrder.customer_id == principal.sub, CustomerOrder.idempotency_key == idempotency_key
            )
        )
        if existing is not None:
            if existing.request_hash != request_hash:
                raise IdempotencyKeyReused("This Idempotency-Key was used for a different order")
            return Placed(existing, replayed=True)

    store = await session.get(Store, command.store_id)
    if store is None or not store.active:
        raise StoreNotFound(f"No store {command.store_id}")
    now = clock.now()
    rules = store_rules(store)
    mode = command.fulfilment_mode
    if mode.value not in store.fulfilment_modes:
        raise NotOrderable(f"{store.name} does not offer {mode.value}", reason="mode-not-offered")
    if not domain.is_open(store.opening_hours, store.timezone, now):
        raise NotOrderable(f"{store.name} is closed now", reason="store-closed")
    distance = None
    if command.address is not None:
        distance = domain.distance_m(store.lat, store.lng, command.address.lat, command.address.lng)
        if mode is FulfilmentMode.delivery and not domain.covers(rules, command.address.lat, command.address.lng):
            raise NotOrderable("The address is outside the store's delivery range", reason="out-of-range")

    quantities = Counter[Any]()
    for item in command.items:
        quantities[item.sku_id] += item.quantity
    rows = (
        await session.execute(
            select(Sku, Product)
            .join(Product, Product.id == Sku.product_id)
            .where(Sku.id.in_(list(quantities)), Sku.store_id == store.id)
        )
    ).all()
    found = {sku.id: (sku, product) for sku, product in rows}
    for sku_id in quantities:
        if sku_id not in found:
            raise NotOrderable(f"SKU {sku_id} is not sold by this store", reason="unknown-sku", sku_id=str(sku_id))
        sku, product = found[sku_id]
        if not (sku.on_shelf and product.on_shelf and product.delisted_at is None):
            raise NotOrderable(f"{product.name} {sku.name} is off the shelf", reason="off-shelf", sku_id=str(sku_id))

    items_fen = sum(found[sku_id][0].price_fen * q for sku_id, q in quantities.items())
    delivery_fee = 0
    if mode is FulfilmentMode.delivery:
        if items_fen < store.min_order_fen:
            raise NotOrderable(
                f"The minimum order is {store.min_order_fen} fen",
                reason="below-minimum",
                min_order_fen=store.min_order_fen,
            )
        delivery_fee = domain.delivery_fee_fen(rules, distance or 0, items_fen)
    if items_fen + delivery_fee > INT4_MAX:
        raise NotOrderable("The total is more than one order can hold", reason="total-too-large")

    # Reserve stock: one conditional decrement per SKU, in a fixed order so concurrent orders cannot deadlock.
    for sku_id in sorted(quantities, key=str):
        left = await session.scalar(
            update(Sku)
            .where(Sku.id == sku_id, Sku.stock >= quantities[sku_id], Sku.on_shelf.is_(True))
            .values(stock=Sku.stock - quantities[sku_id])
            .returning(Sku.stock)
            .execution_options(synchronize_session=False)
        )
        if left is None:
            sku, product = found[sku_id]
            raise OutOfStock(f"Not enough {product.name} {sku.name} in stock", sku_id=str(sku_id))

    order = CustomerOrder(
        id=new_order_id(clock),
        store_id=store.id,
        merchant_id=store.merchant_id,
        customer_id=principal.sub,
        status=OrderStatus.pending_payment.value,
        fulfilment_mode=mode.value,
        address=command.address.model_dump() if command.address else None,
        contact=command.contact.model_dump(),
        note=command.note,
        distance_m=distance,
        items_fen=items_fen,
        delivery_fee_fen=delivery_fee,
        total_fen=items_fen + delivery_fee,
        refunded_fen=0,
        open_aftersales=0,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        placed_at=now,
        updated_at=now,
    )
    session.add(order)
    await session.flush()
    for sku_id, quantity in quantities.items():
        sku, product = found[sku_id]
        session.add(
            OrderLine(
                order_id=order.id,
                sku_id=sku.id,
                product_id=product.id,
                name=f"{product.name} {sku.name}".strip(),
                price_fen=sku.price_fen,
                quantity=quantity,
                sku_version=sku.version,
            )
        )
    session.add(
        OrderStatusChange(
            order_id=order.id,
            from_status=None,
            to_status=order.status,
            action="place",
            actor=actor_of(principal),
            at=now,
        )
    )
    await session.flush()
    await schedule_timer(
        session, kind=UNPAID_TIMER, key=order.id, due_at=now + timedelta(minutes=settings.unpaid_cancel_minutes)
    )
    await events.publish(session, clock, order, events.PLACED)
    return Placed(order, replayed=False)


async def release_stock(session: AsyncSession, order: CustomerOrder) -> None:
    for line in await session.scalars(select(OrderLine).where(OrderLine.order_id == order.id)):
        await session.execute(
            update(Sku)
            .where(Sku.id == line.sku_id)
            .values(stock=Sku.stock + line.quantity)
            .execution_options(synchronize_session=False)
        )


# --- merchant workflow ------------------------------------------------------------------------------------------


def require_merchant_side(principal: Principal) -> None:
    if principal.role not in (Role.merchant, Role.ops, Role.service):
        raise Forbidden("Only the merchant's staff may do this")


async def accept_order(
    session: AsyncSession, order: CustomerOrder, *, actor: str, clock: Clock, action: Action = Action.accept
) -> None:
    await move(session, order, action, actor=actor, clock=clock, accepted_at=clock.now())
    await cancel_timer(session, kind=ACCEPT_TIMER, key=order.id, now=clock.now())
    await events.publish(session, clock, order, events.ACCEPTED)


async def mark_ready(session: AsyncSession, principal: Principal, order: CustomerOrder, clock: Clock) -> None:
    require_merchant_side(principal)
    await move(session, order, Action.mark_ready, actor=actor_of(principal), clock=clock, ready_at=clock.now())
    await events.publish(session, clock, order, events.READY)


async def ship_order(
    session: AsyncSession,
    principal: Principal,
    order: CustomerOrder,
    command: ShipCommand,
    clock: Clock,
    settings: OrderSettings,
) -> None:
    """Express shipping, refused while an after-sales case is open or when a SKU changed since the order (seed 004)."""
    require_merchant_side(principal)
    domain_next_status(Action.ship, OrderStatus(order.status), FulfilmentMode(order.fulfilment_mode))
    if order.open_aftersales > 0:
        raise ShippingBlocked("An after-sales case is open for this order", reason="aftersales-open")
    changed = (
        await session.scalars(
            select(OrderLine.name)
            .join(Sku, Sku.id == OrderLine.sku_id)
            .where(OrderLine.order_id == order.id, Sku.version != OrderLine.sku_version)
        )
    ).all()
    if changed:
        raise ShippingBlocked(
            "A product of this order changed after it was placed; settle it with the customer first",
            reason="sku-changed",
            items=list(changed),
        )
    await move(
        session,
        order,
        Action.ship,
        actor=actor_of(principal),
        clock=clock,
        express_carrier=command.carrier,
        express_tracking_no=command.tracking_no,
    )
    await schedule_timer(
        session,
        kind=AUTO_COMPLETE_TIMER,
        key=order.id,
        due_at=clock.now() + timedelta(hours=settings.auto_complete_hours),
    )
    await events.publish(
        session, clock, order, events.SHIPPED, carrier=command.carrier, tracking_no=command.tracking_no
    )


async def complete_order(
    session: AsyncSession, order: CustomerOrder, action: Action, *, actor: str, clock: Clock
) -> None:
    await move(session, order, action, actor=actor, clock=clock, completed_at=clock.now())
    await cancel_timer(session, kind=AUTO_COMPLETE_TIMER, key=order.id, now=clock.now())
    await events.publish(session, clock, order, events.COMPLETED, completed_by=action.value)


async def confirm_receipt(session: AsyncSession, principal: Principal, order: CustomerOrder, clock: Clock) -> None:
    if principal.role is not Role.customer:
        raise Forbidden("Only the customer confirms receipt")
    await complete_order(session, order, Action.confirm_receipt, actor=actor_of(principal), clock=clock)


# --- cancelling -------------------------------------------------------------------------------------------------

CANCEL_ACTIONS_BY_ROLE = {
    Role.customer: Action.customer_cancel,
    Role.merchant: Action.merchant_cancel,
}


async def end_order(
    session: AsyncSession,
    order: CustomerOrder,
    action: Action,
    *,
    actor: str,
    reason: str,
    clock: Clock,
    refund_cause: str | None = None,
) -> None:
    """Cancels the order by `action`: stock goes back and, if the customer paid, a full refund is requested (under
    `refund_cause` when another service asked for the cancellation and waits for its refund, else the action)."""
    was_paid = OrderStatus(order.status) in domain.PAID_STATUSES
    now = clock.now()
    await move(session, order, action, actor=actor, clock=clock, cancel_reason=reason or action.value, cancelled_at=now)
    await release_stock(session, order)
    for kind in (UNPAID_TIMER, ACCEPT_TIMER, AUTO_COMPLETE_TIMER):
        await cancel_timer(session, kind=kind, key=order.id, now=now)
    refund_fen = 0
    if was_paid:
        refund = await refunds.request_refund(
            session,
            clock,
            order,
            cause=refund_cause or action.value,
            amount_fen=order.total_fen,
            reason=reason or action.value,
        )
        refund_fen = refund.amount_fen if refund else 0
    elif await session.scalar(select(Payment.id).where(Payment.order_id == order.id, Payment.status == "created")):
        # A prepay is out there: close it, so the customer cannot pay a cancelled order.
        await schedule_timer(session, kind=CLOSE_TRADE_TIMER, key=order.id, due_at=now)
    if action is Action.reject:
        await events.publish(session, clock, order, events.REJECTED, reason=reason)
    await events.publish(
        session,
        clock,
        order,
        events.CANCELLED,
        reason=order.cancel_reason,
        cancelled_by=action.value,
        refund_fen=refund_fen,
    )


async def cancel_order(
    session: AsyncSession, principal: Principal, order: CustomerOrder, reason: str, clock: Clock
) -> None:
    """Customers cancel before acceptance; merchant staff (and ops) after it, always with a full refund."""
    if principal.role in (Role.ops, Role.service):
        status = OrderStatus(order.status)
        action = (
            Action.customer_cancel
            if status in (OrderStatus.pending_payment, OrderStatus.paid)
            else Action.merchant_cancel
        )
    elif principal.role in CANCEL_ACTIONS_BY_ROLE:
        action = CANCEL_ACTIONS_BY_ROLE[principal.role]
    else:
        raise Forbidden("Riders cannot cancel orders")
    await end_order(session, order, action, actor=actor_of(principal), reason=reason, clock=clock)


async def reject_order(
    session: AsyncSession, principal: Principal, order: CustomerOrder, reason: str, clock: Clock
) -> None:
    require_merchant_side(principal)
    await end_order(session, order, Action.reject, actor=actor_of(principal), reason=reason, clock=clock)
