"""After-sales use cases: applying, every move of a case, its deadlines, and settling its refund.

Every move goes through `Cases.move`: a conditional UPDATE from the state (and version) the caller saw, a history
row, the deadline of the new state armed as a durable timer keyed by (case, version), and the events, all in the
caller's transaction. A timer whose case moved on finds another version and does nothing. Applications for one
order are serialised by locking its view row, so the limits (one open case per line, five per line, the money
still refundable) hold under concurrency; a partial unique index backs the first.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.aftersales import events, policy
from services.aftersales.domain import (
    DELIVERY_FEE_LINE,
    NEVER_ARRIVED,
    ON_EXPIRY,
    OPEN,
    REASONS,
    REJECT_REASONS,
    RETURN_TYPES,
    TERMINAL,
    Action,
    CaseType,
    Deadline,
    Evidence,
    Reason,
    Side,
    State,
    deadline_for,
    next_state,
)
from services.aftersales.errors import (
    AmountTooLarge,
    CaseNotFound,
    EvidenceRequired,
    IdempotencyKeyReused,
    InvalidReason,
    InvalidTransition,
    NotApplicable,
    OrderNotFound,
)
from services.aftersales.models import (
    AftersalesCase,
    CaseChange,
    CaseLine,
    Compensation,
    EvidenceFile,
    OrderView,
    OrderViewLine,
)
from services.aftersales.schemas import ApplyCommand
from services.aftersales.settings import AftersalesSettings
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.errors import Forbidden, ValidationFailed
from shared.events.models import Timer
from shared.tenancy import covers_store, require_tenant
from shared.timers import cancel_timer, schedule_timer

DEADLINE_TIMER = "aftersales.deadline"
CUSTOMER_COMPENSATION = "customer"
CARRIER_CLAIM = "carrier_claim"
# Order statuses before the rider picks the order up: a cancel request is still possible.
BEFORE_PICKUP = frozenset({"paid", "accepted", "ready", "ready_for_pickup", "dispatching"})
# Order statuses in which the order service already refunds (or refunded) the whole order itself.
REFUNDED_BY_ORDER = frozenset({"cancelled", "refunding", "refunded"})
MIN_TEXT = 2  # characters: "少了" says enough in Chinese
# The state's event, published when a move lands there (approvals and rulings publish their own).
LANDING_EVENTS = {
    State.refunded: events.REFUNDED,
    State.exchanged: events.CLOSED,
    State.closed_rejected: events.CLOSED,
    State.closed_return_expired: events.CLOSED,
    State.closed_cancelled: events.CANCELLED,
}
OUTCOMES = {State.exchanged: "exchanged", State.closed_rejected: "rejected",
            State.closed_return_expired: "return_expired"}  # fmt: skip


@dataclass(frozen=True)
class Applied:
    case: AftersalesCase
    replayed: bool


def actor_of(principal: Principal) -> str:
    return f"{principal.role.value}:{principal.sub}"


def side_of(principal: Principal) -> Side:
    if principal.role is Role.customer:
        return Side.customer
    if principal.role is Role.merchant:
        return Side.merchant
    if principal.role in (Role.ops, Role.service):
        return Side.ops
    raise Forbidden("Riders have no part in after-sales cases")


def may_see(principal: Principal, case: AftersalesCase) -> bool:
    """The customer their own cases (a tracking link's principal only its order's); merchant staff their merchant's,
    only their stores' if the token lists stores; ops and services all."""
    if principal.order_id is not None and case.order_id != principal.order_id:
        return False
    if principal.role is Role.customer:
        return case.customer_id == principal.sub
    return principal.role is not Role.rider and covers_store(principal, case.merchant_id, case.store_id)


def refund_cause(case_id: str, attempt: int) -> str:
    """The order service's refund cause for a case's attempt (its refunds are unique per order and cause)."""
    return f"aftersales:{case_id}" if attempt <= 1 else f"aftersales:{case_id}#{attempt}"


def parse_cause(cause: str) -> tuple[str, int] | None:
    if not cause.startswith("aftersales:"):
        return None
    case_id, _, attempt = cause.removeprefix("aftersales:").partition("#")
    return case_id, int(attempt) if attempt.isdigit() else 1


def _hash(command: ApplyCommand) -> str:
    return hashlib.sha256(json.dumps(command.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


class Cases:
    def __init__(self, settings: AftersalesSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock

    # --- reading ----------------------------------------------------------------------------------------------

    async def visible(
        self, session: AsyncSession, principal: Principal, case_id: str, *, lock: bool = False
    ) -> AftersalesCase:
        """The case if the principal may see it; another party's case is not found (a 403 would confirm it)."""
        require_tenant(principal)
        stmt = select(AftersalesCase).where(AftersalesCase.id == case_id)
        case = await session.scalar(stmt.with_for_update() if lock else stmt)
        if case is None or not may_see(principal, case):
            raise CaseNotFound(f"No case {case_id}")
        return case

    # --- applying ---------------------------------------------------------------------------------------------

    async def apply(
        self, session: AsyncSession, principal: Principal, command: ApplyCommand, idempotency_key: str | None
    ) -> Applied:
        if principal.role is not Role.customer:
            raise Forbidden("Only the order's customer applies")
        request_hash = _hash(command)
        if idempotency_key:
            # Serialises requests with the same key: the second waits for the first's commit, then finds its case.
            await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                                  {"k": f"aftersales-idem:{principal.sub}:{idempotency_key}"})  # fmt: skip
            existing = await session.scalar(
                select(AftersalesCase).where(
                    AftersalesCase.customer_id == principal.sub, AftersalesCase.idempotency_key == idempotency_key
                )
            )
            if existing is not None:
                if existing.request_hash != request_hash:
                    raise IdempotencyKeyReused("This Idempotency-Key was used for a different application")
                return Applied(existing, replayed=True)
        # The lock that serialises every application for this order.
        view = await session.scalar(select(OrderView).where(OrderView.order_id == command.order_id).with_for_update())
        # A view started from a delivery's news, the order's own events not heard yet (no status): the order is not
        # known here yet, as when there is no view, rather than refused for facts the view does not have.
        if view is None or view.customer_id != principal.sub or not view.status:
            raise OrderNotFound(f"No order {command.order_id}")
        case_type = CaseType(command.type.value)
        reason = self._reason(REASONS, command.reason_code, case_type)
        await self._check_order(
            view, case_type, await policy.load(session, self.settings, view.merchant_id, view.store_id)
        )
        wanted = await self._wanted_lines(session, view, case_type, command)
        await self._check_lines(session, view, wanted)
        asked = 0 if case_type is CaseType.exchange else command.amount_fen
        if case_type is CaseType.cancel_request:
            asked = await self.refundable(session, view)
        elif case_type is not CaseType.exchange:
            cap = min(await self.refundable(session, view), await self._line_cap(session, view, wanted))
            if asked is None:
                asked = cap
            if asked > cap:
                raise AmountTooLarge(f"At most {cap} fen is refundable for these lines", refundable_fen=cap)
            if asked <= 0:
                raise NotApplicable("Nothing is left to refund for these lines", reason="nothing-refundable")
        evidence_ids = command.evidence_ids
        self._check_evidence(reason, command.description, evidence_ids)
        case = await self._open(
            session, view, case_type, wanted, reason_code=command.reason_code, description=command.description,
            asked_fen=asked or 0, actor=actor_of(principal), idempotency_key=idempotency_key,
            request_hash=request_hash,
        )  # fmt: skip
        await self._attach(session, case, principal, evidence_ids)
        return Applied(case, replayed=False)

    @staticmethod
    def _reason(table: dict[str, Reason], code: str, case_type: CaseType) -> Reason:
        reason = table.get(code)
        if reason is None or case_type not in reason.types:
            allowed = sorted(c for c, r in table.items() if case_type in r.types)
            raise InvalidReason(f"{code!r} is not a reason for a {case_type.value} case", allowed=allowed)
        return reason

    @staticmethod
    def _check_evidence(reason: Reason, description: str, evidence_ids: list[uuid.UUID]) -> None:
        if reason.evidence is Evidence.photo and not evidence_ids:
            raise EvidenceRequired("This reason needs at least one photo (upload it first)", needs="photo")
        if reason.evidence is Evidence.text and len(description.strip()) < MIN_TEXT:
            raise EvidenceRequired("This reason needs a description", needs="text")

    async def _check_order(self, view: OrderView, case_type: CaseType, rules: policy.Policy) -> None:
        if view.paid_at is None:
            raise NotApplicable("The order is not paid", reason="not-paid")
        if view.status in REFUNDED_BY_ORDER:
            raise NotApplicable(f"The order is {view.status}", reason="order-refunded")
        if case_type is CaseType.non_delivery:
            raise Forbidden("Non-delivery cases are opened by the platform")
        if case_type is CaseType.cancel_request:
            if view.status not in BEFORE_PICKUP or view.picked_up_at is not None:
                raise NotApplicable("The order was picked up already: ask for a refund once it arrives",
                                    reason="picked-up")  # fmt: skip
            return
        if view.received_at is None:
            raise NotApplicable("The order has not arrived yet", reason="not-received-yet")
        window = rules.window(rules.is_perishable(view.fulfilment_mode))
        if self.clock.now() > view.received_at + window:
            raise NotApplicable("The after-sales window of this order is over", reason="window-closed",
                                closed_at=(view.received_at + window).isoformat())  # fmt: skip

    async def _wanted_lines(
        self, session: AsyncSession, view: OrderView, case_type: CaseType, command: ApplyCommand
    ) -> dict[str, int]:
        lines = {line.sku_id: line for line in await self._order_lines(session, view)}
        if case_type is CaseType.cancel_request:
            wanted = {sku: line.quantity for sku, line in lines.items()}
            return wanted | ({DELIVERY_FEE_LINE: 1} if view.delivery_fee_fen else {})
        if not command.lines:
            raise ValidationFailed("Name the lines (and quantities) the case is about")
        wanted = {}
        for item in command.lines:
            if item.sku_id == DELIVERY_FEE_LINE:
                if not view.delivery_fee_fen or case_type is not CaseType.refund_only:
                    raise NotApplicable("The delivery fee can only be refunded, and only if one was paid",
                                        reason="no-delivery-fee")  # fmt: skip
                wanted[DELIVERY_FEE_LINE] = 1
                continue
            line = lines.get(item.sku_id)
            if line is None:
                raise NotApplicable(f"The order has no line {item.sku_id}", reason="unknown-line")
            quantity = wanted.get(item.sku_id, 0) + item.quantity
            if quantity > line.quantity:
                raise NotApplicable(f"The order has {line.quantity} of {line.name}", reason="quantity")
            wanted[item.sku_id] = quantity
        return wanted

    async def _check_lines(self, session: AsyncSession, view: OrderView, wanted: dict[str, int]) -> None:
        rows = (
            await session.execute(
                select(CaseLine.sku_id, func.count(), func.bool_or(CaseLine.open))
                .where(CaseLine.order_id == view.order_id, CaseLine.sku_id.in_(list(wanted)))
                .group_by(CaseLine.sku_id)
            )
        ).all()
        for sku_id, cases, any_open in rows:
            if any_open:
                raise NotApplicable(f"Line {sku_id} has an open case", reason="line-has-open-case", sku_id=sku_id)
            if cases >= self.settings.max_cases_per_line:
                raise NotApplicable(f"Line {sku_id} had {cases} cases, the most it may have",
                                    reason="too-many-cases", sku_id=sku_id)  # fmt: skip

    async def _order_lines(self, session: AsyncSession, view: OrderView) -> list[OrderViewLine]:
        return list(await session.scalars(select(OrderViewLine).where(OrderViewLine.order_id == view.order_id)))

    async def refundable(self, session: AsyncSession, view: OrderView) -> int:
        """What is left of the order's payment: its total, less what the order service refunded (its own refunds
        and cases' alike), less what open cases may still cost."""
        pending = await session.scalar(
            select(func.coalesce(func.sum(func.coalesce(AftersalesCase.agreed_fen, AftersalesCase.asked_fen)), 0))
            .where(AftersalesCase.order_id == view.order_id, AftersalesCase.state.in_([s.value for s in OPEN]))
        )  # fmt: skip
        return max(view.total_fen - view.refunded_fen - int(pending or 0), 0)

    async def _line_cap(self, session: AsyncSession, view: OrderView, wanted: dict[str, int]) -> int:
        """The most the wanted lines may still yield: their value, less what earlier cases took of them (a case's
        amount shared among its lines by their value)."""
        prices = {line.sku_id: line.price_fen for line in await self._order_lines(session, view)}
        prices[DELIVERY_FEE_LINE] = view.delivery_fee_fen
        quantities = {line.sku_id: line.quantity for line in await self._order_lines(session, view)}
        quantities[DELIVERY_FEE_LINE] = 1
        used: dict[str, float] = {}
        others = (
            await session.execute(
                select(AftersalesCase, CaseLine)
                .join(CaseLine, CaseLine.case_id == AftersalesCase.id)
                .where(AftersalesCase.order_id == view.order_id,
                       AftersalesCase.state.in_([*(s.value for s in OPEN), State.refunded.value]))
            )
        ).all()  # fmt: skip
        by_case: dict[str, list[CaseLine]] = {}
        amounts: dict[str, int] = {}
        for case, line in others:
            by_case.setdefault(case.id, []).append(line)
            settled = case.refunded_fen if case.state == State.refunded.value else case.agreed_fen
            amounts[case.id] = settled if settled is not None else case.asked_fen
        for case_id, lines in by_case.items():
            value = sum(prices.get(line.sku_id, 0) * line.quantity for line in lines) or 1
            for line in lines:
                used[line.sku_id] = used.get(line.sku_id, 0) + (amounts[case_id] or 0) * (
                    prices.get(line.sku_id, 0) * line.quantity / value)  # fmt: skip
        cap = 0.0
        for sku_id, quantity in wanted.items():
            full = prices[sku_id] * quantities[sku_id]
            cap += max(min(prices[sku_id] * quantity, full - used.get(sku_id, 0)), 0)
        return int(cap)

    async def _open(
        self,
        session: AsyncSession,
        view: OrderView,
        case_type: CaseType,
        wanted: dict[str, int],
        *,
        reason_code: str,
        description: str,
        asked_fen: int,
        actor: str,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        case_id: str | None = None,
    ) -> AftersalesCase:
        now = self.clock.now()
        rules = await policy.load(session, self.settings, view.merchant_id, view.store_id)
        case = AftersalesCase(
            id=case_id or f"as_{uuid.uuid4().hex[:20]}",
            order_id=view.order_id,
            customer_id=view.customer_id,
            merchant_id=view.merchant_id,
            store_id=view.store_id,
            type=case_type.value,
            state=State.requested.value,
            version=1,
            reason_code=reason_code,
            description=description,
            asked_fen=asked_fen,
            refund_attempt=0,
            delivery_proofs=list(view.proofs or []),
            perishable=rules.is_perishable(view.fulfilment_mode),
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            created_at=now,
            updated_at=now,
        )
        session.add(case)
        await session.flush()
        # Compensation is about the whole order, not its lines: it holds none (a customer's open case on a line
        # neither blocks it nor is blocked by it); its amount counts against what is refundable all the same.
        holds_lines = case_type is not CaseType.non_delivery
        for sku_id, quantity in wanted.items():
            session.add(CaseLine(case_id=case.id, sku_id=sku_id, order_id=view.order_id, quantity=quantity,
                                 open=holds_lines))  # fmt: skip
        session.add(CaseChange(case_id=case.id, action="apply", from_state=None, to_state=case.state, actor=actor,
                               side=Side.system.value if actor.startswith("system") else Side.customer.value,
                               note=description[:500], data={"asked_fen": asked_fen}, at=now))  # fmt: skip
        await session.flush()
        await self._arm(session, case, rules)
        await events.publish(session, self.clock, case, events.REQUESTED, actor=actor)
        return case

    async def _attach(
        self, session: AsyncSession, case: AftersalesCase, principal: Principal, evidence_ids: list[uuid.UUID]
    ) -> None:
        """Attaches the caller's own evidence to the case: uploaded by them, and not yet part of another case."""
        for evidence_id in evidence_ids:
            attached = await session.scalar(
                update(EvidenceFile)
                .where(EvidenceFile.id == evidence_id, EvidenceFile.uploaded_by == principal.sub,
                       (EvidenceFile.case_id.is_(None)) | (EvidenceFile.case_id == case.id))
                .values(case_id=case.id)
                .returning(EvidenceFile.id)
            )  # fmt: skip
            if attached is None:
                raise ValidationFailed(f"No evidence {evidence_id} of yours to attach", evidence_id=str(evidence_id))

    # --- moving -----------------------------------------------------------------------------------------------

    async def move(
        self,
        session: AsyncSession,
        case: AftersalesCase,
        action: Action,
        *,
        side: Side,
        actor: str,
        note: str = "",
        data: dict[str, Any] | None = None,
        **values: Any,
    ) -> None:
        """The one way a case changes state. Callers follow an approval or a receipt on with `_follow_on` once
        they published their own event, so events keep the order of the moves."""
        source = State(case.state)
        target = next_state(action, source, side)
        if target is None:
            raise InvalidTransition(
                f"Cannot {action.value.replace('_', ' ')} a case that is {source.value}",
                action=action.value, state=source.value,
            )  # fmt: skip
        now = self.clock.now()
        rules = await policy.load(session, self.settings, case.merchant_id, case.store_id)
        old_version = case.version
        moved = await session.scalar(
            update(AftersalesCase)
            .where(AftersalesCase.id == case.id, AftersalesCase.state == source.value,
                   AftersalesCase.version == old_version)
            .values(state=target.value, version=old_version + 1, updated_at=now,
                    closed_at=now if target in TERMINAL else None, **values)
            .returning(AftersalesCase.id)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        if moved is None:
            raise InvalidTransition(f"The case moved on from {source.value}", action=action.value)
        await session.refresh(case)
        session.add(CaseChange(case_id=case.id, action=action.value, from_state=source.value, to_state=target.value,
                               actor=actor, side=side.value, note=note[:500], data=data or {}, at=now))  # fmt: skip
        await cancel_timer(session, kind=DEADLINE_TIMER, key=f"{case.id}:{old_version}", now=now)
        if target in TERMINAL:
            await session.execute(update(CaseLine).where(CaseLine.case_id == case.id).values(open=False))
        await self._arm(session, case, rules)
        await session.flush()
        landing = LANDING_EVENTS.get(target)
        if landing == events.CLOSED:
            await events.publish(session, self.clock, case, landing, actor=actor, outcome=OUTCOMES[target])
        elif landing == events.REFUNDED:
            await events.publish(session, self.clock, case, landing, actor=actor, refunded_fen=case.refunded_fen or 0)
        elif landing is not None:
            await events.publish(session, self.clock, case, landing, actor=actor)

    async def _follow_on(self, session: AsyncSession, case: AftersalesCase, state: State, actor: str) -> None:
        case_type = CaseType(case.type)
        if state is State.approved:
            if case_type in RETURN_TYPES:
                await self.move(session, case, Action.request_return, side=Side.system, actor=actor)
            else:
                await self._request_refund(session, case, Action.refund, actor)
        elif state is State.received:
            if case_type is CaseType.exchange:
                await self.move(session, case, Action.reship, side=Side.system, actor=actor)
            else:  # a return is refunded on receipt, not on approval
                await self._request_refund(session, case, Action.refund, actor)

    async def _request_refund(self, session: AsyncSession, case: AftersalesCase, action: Action, actor: str) -> None:
        amount = case.agreed_fen if case.agreed_fen is not None else case.asked_fen
        await self.move(session, case, action, side=Side.ops if action is Action.retry_refund else Side.system,
                        actor=actor, refund_attempt=case.refund_attempt + 1)  # fmt: skip
        reason = (REASONS.get(case.reason_code) or REASONS["other"]).title
        await events.publish(session, self.clock, case, events.REFUND_REQUESTED, actor=actor, amount_fen=amount,
                             attempt=case.refund_attempt, reason=f"售后退款: {reason}")  # fmt: skip

    async def _arm(self, session: AsyncSession, case: AftersalesCase, rules: policy.Policy) -> None:
        deadline = deadline_for(State(case.state), CaseType(case.type), case.perishable)
        if case.type == CaseType.non_delivery.value:
            deadline = None
        due = self.clock.now() + rules.length(deadline) if deadline else None
        case.deadline, case.deadline_at = (deadline.value if deadline else None), due
        if deadline is not None and due is not None:
            await schedule_timer(
                session,
                kind=DEADLINE_TIMER,
                key=f"{case.id}:{case.version}",
                due_at=due,
                payload={"case_id": case.id, "version": case.version, "deadline": deadline.value},
            )
        await session.flush()

    # --- the parties' actions ---------------------------------------------------------------------------------

    async def act(
        self, session: AsyncSession, principal: Principal, case: AftersalesCase, action: Action, body: dict[str, Any]
    ) -> None:
        side = side_of(principal)
        actor = actor_of(principal)
        note = str(body.get("note") or "")
        case_type = CaseType(case.type)
        if case_type is CaseType.non_delivery and action is not Action.retry_refund:
            raise InvalidTransition("A non-delivery case is decided by the platform")
        if action is Action.approve:
            await self._approve(session, case, side=side, actor=actor, auto=False, note=note)
        elif action is Action.negotiate:
            if case_type in (CaseType.cancel_request, CaseType.exchange):
                raise InvalidTransition("Only refund and return cases are negotiated")
            amount = int(body["amount_fen"])
            if amount > case.asked_fen:
                raise AmountTooLarge(f"A proposal cannot exceed the {case.asked_fen} fen asked")
            without_return = bool(body.get("without_return")) and case_type is CaseType.return_refund
            proposal: dict[str, Any] = {"amount_fen": amount, "without_return": without_return, "note": note}
            await self.move(session, case, action, side=side, actor=actor, note=note, data=proposal, proposal=proposal)
            await events.publish(session, self.clock, case, events.NEGOTIATED, actor=actor, proposed_fen=amount,
                                 without_return=without_return)  # fmt: skip
        elif action is Action.accept_proposal:
            accepted: dict[str, Any] = case.proposal or {}
            values: dict[str, Any] = {"agreed_fen": int(accepted.get("amount_fen", case.asked_fen))}
            if accepted.get("without_return"):  # "refund without return": the return case becomes refund only
                values["type"] = CaseType.refund_only.value
            await self.move(session, case, action, side=side, actor=actor, note=note, data=values, **values)
            await events.publish(session, self.clock, case, events.APPROVED, actor=actor, auto=False)
            await self._follow_on(session, case, State.approved, actor)
        elif action is Action.reject:
            code = str(body.get("reason_code") or "")
            reason = self._reason(REJECT_REASONS, code, case_type)
            evidence_ids = [uuid.UUID(str(e)) for e in body.get("evidence_ids") or []]
            self._check_evidence(reason, note, evidence_ids)
            await self._attach(session, case, principal, evidence_ids)
            await self.move(session, case, action, side=side, actor=actor, note=note,
                            data={"reason_code": code}, reject_reason_code=code)  # fmt: skip
            await events.publish(session, self.clock, case, events.REJECTED, actor=actor, reject_reason_code=code)
        elif action is Action.escalate:
            await self._attach(session, case, principal, [uuid.UUID(str(e)) for e in body.get("evidence_ids") or []])
            await self.move(session, case, action, side=side, actor=actor, note=note)
            await events.publish(session, self.clock, case, events.ESCALATED, actor=actor, by_system=False)
        elif action is Action.ship_return:
            if case_type not in RETURN_TYPES:
                raise InvalidTransition("Only return and exchange cases ship a return")
            shipment = {k: body.get(k) for k in ("carrier", "tracking_no", "collected_by") if body.get(k)}
            if side is Side.customer and not (shipment.get("carrier") and shipment.get("tracking_no")):
                raise ValidationFailed("A return shipped by the customer needs its carrier and tracking number")
            if side is Side.merchant:  # the store's own rider collected it from the customer
                shipment = {"collected_by": shipment.get("collected_by") or actor}
            await self.move(session, case, action, side=side, actor=actor, note=note, data=shipment,
                            return_shipment=shipment)  # fmt: skip
        elif action is Action.confirm_receipt:
            if case_type not in RETURN_TYPES:
                raise InvalidTransition("Only return and exchange cases have goods to receive")
            await self.move(session, case, action, side=side, actor=actor, note=note)
            await self._follow_on(session, case, State.received, actor)
        elif action is Action.deliver_exchange:
            shipment = {k: body.get(k) for k in ("carrier", "tracking_no") if body.get(k)}
            await self.move(session, case, action, side=side, actor=actor, note=note, data=shipment,
                            reship_shipment=shipment)  # fmt: skip
        elif action is Action.cancel or action is Action.decline_proposal:
            await self.move(session, case, action, side=side, actor=actor, note=note)
        elif action is Action.retry_refund:
            await self._request_refund(session, case, Action.retry_refund, actor)
        else:
            raise InvalidTransition(f"{action.value} is not an action a party takes")

    async def _approve(
        self, session: AsyncSession, case: AftersalesCase, *, side: Side, actor: str, auto: bool, note: str = ""
    ) -> None:
        agreed = case.asked_fen
        await self.move(session, case, Action.approve, side=side, actor=actor, note=note, agreed_fen=agreed,
                        data={"agreed_fen": agreed, "auto": auto})  # fmt: skip
        await events.publish(session, self.clock, case, events.APPROVED, actor=actor, auto=auto)
        await self._follow_on(session, case, State.approved, actor)

    async def rule(
        self, session: AsyncSession, principal: Principal, case: AftersalesCase, outcome: str, amount_fen: int | None,
        note: str,
    ) -> None:  # fmt: skip
        """Ops decide an arbitration: refund (at most what was asked) or reject."""
        actor = actor_of(principal)
        ruling = {"outcome": outcome, "amount_fen": amount_fen, "note": note, "by": actor}
        if outcome == "refund":
            amount = case.asked_fen if amount_fen is None else amount_fen
            if amount > case.asked_fen:
                raise AmountTooLarge(f"A ruling cannot grant more than the {case.asked_fen} fen asked")
            ruling["amount_fen"] = amount
            await self.move(session, case, Action.rule_refund, side=Side.ops, actor=actor, note=note, data=ruling,
                            ruling=ruling, agreed_fen=amount)  # fmt: skip
            await events.publish(session, self.clock, case, events.RULED, actor=actor, outcome=outcome,
                                 amount_fen=amount)  # fmt: skip
            await self._follow_on(session, case, State.approved, actor)
        else:
            await self.move(session, case, Action.rule_reject, side=Side.ops, actor=actor, note=note, data=ruling,
                            ruling=ruling)  # fmt: skip
            await events.publish(session, self.clock, case, events.RULED, actor=actor, outcome=outcome, amount_fen=None)

    async def extend(
        self, session: AsyncSession, principal: Principal, case: AftersalesCase, until: datetime, note: str
    ) -> None:
        """Ops move the current deadline later (a holiday, a dispute that needs time); never earlier."""
        if case.deadline_at is None or case.deadline is None:
            raise InvalidTransition("The case has no running deadline")
        limit = self.clock.now() + timedelta(minutes=self.settings.max_deadline_minutes)
        if until <= case.deadline_at or until > limit:
            raise ValidationFailed(
                "The new deadline must be later than the current one, and within the longest a deadline may run",
                deadline_at=case.deadline_at.isoformat(), latest=limit.isoformat(),
            )  # fmt: skip
        before = case.deadline_at
        case.deadline_at, case.updated_at = until, self.clock.now()
        await schedule_timer(
            session,
            kind=DEADLINE_TIMER,
            key=f"{case.id}:{case.version}",
            due_at=until,
            payload={"case_id": case.id, "version": case.version, "deadline": case.deadline},
        )
        session.add(
            CaseChange(
                case_id=case.id,
                action="extend_deadline",
                from_state=case.state,
                to_state=case.state,
                actor=actor_of(principal),
                side=Side.ops.value,
                note=note[:500],
                data={"from": before.isoformat(), "to": until.isoformat()},
                at=self.clock.now(),
            )
        )
        await session.flush()  # fmt: skip

    # --- deadlines and refund outcomes ------------------------------------------------------------------------

    async def on_deadline(self, session: AsyncSession, timer: Timer) -> None:
        """A deadline expired: it acts only if the case is still at the version (so the state) that armed it."""
        case = await session.scalar(
            select(AftersalesCase).where(AftersalesCase.id == timer.payload.get("case_id")).with_for_update()
        )
        if case is None or case.version != timer.payload.get("version") or State(case.state) in TERMINAL:
            return
        if case.deadline_at is not None and case.deadline_at > self.clock.now():  # extended after it was claimed
            await schedule_timer(session, kind=DEADLINE_TIMER, key=timer.key, due_at=case.deadline_at,
                                 payload=dict(timer.payload))  # fmt: skip
            return
        deadline = Deadline(timer.payload["deadline"])
        actor = f"timer:{deadline.value}"
        action = ON_EXPIRY[deadline]
        if action is Action.approve:
            if case.reason_code == NEVER_ARRIVED and case.delivery_proofs:
                # The merchant's silence does not settle a claim against a proven delivery: ops do.
                await self.move(
                    session,
                    case,
                    Action.refer_to_ops,
                    side=Side.system,
                    actor=actor,
                    data={"proofs": case.delivery_proofs},
                    note="proof of delivery on file",
                )
                await events.publish(session, self.clock, case, events.ESCALATED, actor=actor, by_system=True)
                return  # fmt: skip
            await self._approve(session, case, side=Side.system, actor=actor, auto=True)
        elif action is Action.confirm_receipt:
            await self.move(session, case, action, side=Side.system, actor=actor)
            await self._follow_on(session, case, State.received, actor)
        else:
            await self.move(session, case, action, side=Side.system, actor=actor)

    async def on_refund_outcome(
        self, session: AsyncSession, cause: str, *, succeeded: bool, amount_fen: int, error: str
    ) -> None:
        parsed = parse_cause(cause)
        if parsed is None:
            return
        case_id, attempt = parsed
        case = await session.scalar(select(AftersalesCase).where(AftersalesCase.id == case_id).with_for_update())
        if case is None or case.state != State.refunding.value or case.refund_attempt != attempt:
            return  # a replay, or the outcome of an attempt already settled
        actor = "order:refund"
        if succeeded:
            await self.move(session, case, Action.refund_settled, side=Side.system, actor=actor,
                            data={"refunded_fen": amount_fen}, refunded_fen=amount_fen)  # fmt: skip
        else:
            await self.move(session, case, Action.refund_failed, side=Side.system, actor=actor, note=error[:500])
        # A compensation granted by this case follows its refund.
        await session.execute(
            update(Compensation)
            .where(Compensation.case_id == case.id, Compensation.kind == CUSTOMER_COMPENSATION)
            .values(status="paid" if succeeded else "failed", settled_fen=amount_fen if succeeded else None,
                    settled_at=self.clock.now())
        )  # fmt: skip
