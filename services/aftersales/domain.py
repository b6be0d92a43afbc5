"""The after-sales case in one place: its types, its states, the one transition table every move goes through,
the deadline each waiting state arms, and the reason tables scoped by case type.

Modelled on WeChat Shop's 售后单 and the takeaway platforms (see README, After-sales): the merchant answers, may
negotiate or reject with a reason; a rejected customer may escalate to ops; a return is refunded on receipt; every
wait is bounded by a deadline that moves the case by itself, so neither side can stall it. Terminal states are
never left: no transition has one as its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CaseType(StrEnum):
    refund_only = "refund_only"
    return_refund = "return_refund"
    exchange = "exchange"
    cancel_request = "cancel_request"  # raised before the rider picks the order up
    non_delivery = "non_delivery"  # opened by the system when a delivery ends without reaching the customer


class State(StrEnum):
    requested = "requested"
    negotiating = "negotiating"
    approved = "approved"
    awaiting_return = "awaiting_return"
    return_in_transit = "return_in_transit"
    received = "received"
    reshipping = "reshipping"
    refunding = "refunding"
    refund_failed = "refund_failed"
    rejected = "rejected"
    in_arbitration = "in_arbitration"
    awaiting_ruling = "awaiting_ruling"  # arbitration's evidence window closed: ops rule
    refunded = "refunded"
    exchanged = "exchanged"
    closed_cancelled = "closed_cancelled"
    closed_rejected = "closed_rejected"
    closed_return_expired = "closed_return_expired"


class Action(StrEnum):
    approve = "approve"
    negotiate = "negotiate"
    accept_proposal = "accept_proposal"
    decline_proposal = "decline_proposal"
    reject = "reject"
    escalate = "escalate"
    refer_to_ops = "refer_to_ops"
    close_evidence = "close_evidence"
    rule_refund = "rule_refund"
    rule_reject = "rule_reject"
    expire_escalation = "expire_escalation"
    request_return = "request_return"
    ship_return = "ship_return"
    expire_return = "expire_return"
    confirm_receipt = "confirm_receipt"
    refund = "refund"
    reship = "reship"
    deliver_exchange = "deliver_exchange"
    refund_settled = "refund_settled"
    refund_failed = "refund_failed"
    retry_refund = "retry_refund"
    cancel = "cancel"


class Side(StrEnum):
    """Who may take an action: the case's two parties, ops, or the service itself (events and deadlines)."""

    customer = "customer"
    merchant = "merchant"
    ops = "ops"
    system = "system"


S = State
TERMINAL = frozenset({S.refunded, S.exchanged, S.closed_cancelled, S.closed_rejected, S.closed_return_expired})
# States whose case still holds its lines (and blocks express shipping); a terminal case releases them.
OPEN = frozenset(State) - TERMINAL
# Money the case may still cost: its asked (or agreed) amount counts against what is refundable until it settles.
RETURN_TYPES = frozenset({CaseType.return_refund, CaseType.exchange})


@dataclass(frozen=True)
class Transition:
    sources: frozenset[State]
    target: State
    sides: frozenset[Side]


def _t(sources: set[State], target: State, *sides: Side) -> Transition:
    return Transition(frozenset(sources), target, frozenset(sides))


C, M, OPS, SYS = Side.customer, Side.merchant, Side.ops, Side.system
TRANSITIONS: dict[Action, Transition] = {
    Action.approve: _t({S.requested}, S.approved, M, OPS, SYS),
    Action.negotiate: _t({S.requested}, S.negotiating, M),
    Action.accept_proposal: _t({S.negotiating}, S.approved, C),
    Action.decline_proposal: _t({S.negotiating}, S.requested, C, SYS),
    Action.reject: _t({S.requested}, S.rejected, M),
    Action.escalate: _t({S.rejected}, S.in_arbitration, C),
    # A "never arrived" claim against a proven delivery goes to ops on the merchant's silence, not auto-approved.
    Action.refer_to_ops: _t({S.requested}, S.in_arbitration, SYS),
    Action.close_evidence: _t({S.in_arbitration}, S.awaiting_ruling, SYS),
    Action.rule_refund: _t({S.in_arbitration, S.awaiting_ruling}, S.approved, OPS),
    Action.rule_reject: _t({S.in_arbitration, S.awaiting_ruling}, S.closed_rejected, OPS),
    Action.expire_escalation: _t({S.rejected}, S.closed_rejected, SYS),
    Action.request_return: _t({S.approved}, S.awaiting_return, SYS),
    Action.ship_return: _t({S.awaiting_return}, S.return_in_transit, C, M),
    Action.expire_return: _t({S.awaiting_return}, S.closed_return_expired, SYS),
    Action.confirm_receipt: _t({S.return_in_transit}, S.received, M, OPS, SYS),
    Action.refund: _t({S.approved, S.received}, S.refunding, SYS),
    Action.reship: _t({S.received}, S.reshipping, SYS),
    Action.deliver_exchange: _t({S.reshipping}, S.exchanged, M, OPS),
    Action.refund_settled: _t({S.refunding}, S.refunded, SYS),
    Action.refund_failed: _t({S.refunding}, S.refund_failed, SYS),
    Action.retry_refund: _t({S.refund_failed}, S.refunding, OPS),
    Action.cancel: _t(
        {S.requested, S.negotiating, S.rejected, S.awaiting_return, S.in_arbitration, S.awaiting_ruling},
        S.closed_cancelled,
        C,
    ),
}
assert not any(TERMINAL & t.sources for t in TRANSITIONS.values()), "terminal states are never left"


def next_state(action: Action, state: State, side: Side) -> State | None:
    """Where `action` takes a case in `state` when `side` asks; None when it may not."""
    transition = TRANSITIONS[action]
    if state in transition.sources and side in transition.sides:
        return transition.target
    return None


# What each side may do next, as the API offers it (the system's own moves are not offered).
OFFERED: dict[Side, tuple[Action, ...]] = {
    Side.customer: (Action.accept_proposal, Action.decline_proposal, Action.ship_return, Action.escalate,
                    Action.cancel),
    Side.merchant: (Action.approve, Action.negotiate, Action.reject, Action.ship_return, Action.confirm_receipt,
                    Action.deliver_exchange),
    Side.ops: (Action.approve, Action.rule_refund, Action.rule_reject, Action.confirm_receipt,
               Action.deliver_exchange, Action.retry_refund),
}  # fmt: skip


def next_actions(state: State, case_type: CaseType) -> dict[str, list[str]]:
    actions: dict[str, list[str]] = {}
    for side, offered in OFFERED.items():
        allowed = [a.value for a in offered if next_state(a, state, side) is not None]
        if case_type is CaseType.non_delivery:  # opened and decided by the system; only ops retry its refund
            allowed = [a for a in allowed if a == Action.retry_refund.value]
        if case_type not in RETURN_TYPES:
            allowed = [a for a in allowed if a not in (Action.ship_return.value, Action.confirm_receipt.value)]
        actions[side.value] = allowed
    if state is S.requested and case_type in (CaseType.cancel_request, CaseType.exchange):
        actions[Side.merchant.value] = [a for a in actions[Side.merchant.value] if a != Action.negotiate.value]
    return actions


class Deadline(StrEnum):
    """The timers of the deadline table (README, After-sales), named as the settings that hold their lengths."""

    cancel_answer = "cancel_answer"  # T_cancel: merchant answers a cancel request → approved
    perishable_answer = "perishable_answer"  # T_merchant, food and fresh → approved
    standard_answer = "standard_answer"  # T_merchant, retail and express → approved
    customer_confirm = "customer_confirm"  # T_confirm: customer answers a proposal → back to requested
    return_shipment = "return_shipment"  # T_return: customer ships the return → closed_return_expired
    merchant_receipt = "merchant_receipt"  # T_receipt: merchant confirms receipt → received (auto-refund)
    escalation = "escalation"  # T_escalate: customer escalates after a rejection → closed_rejected
    arbitration_evidence = "arbitration_evidence"  # T_evidence: evidence in arbitration → awaiting ruling


# The action a deadline takes when it expires with the case still where it armed it.
ON_EXPIRY: dict[Deadline, Action] = {
    Deadline.cancel_answer: Action.approve,
    Deadline.perishable_answer: Action.approve,
    Deadline.standard_answer: Action.approve,
    Deadline.customer_confirm: Action.decline_proposal,
    Deadline.return_shipment: Action.expire_return,
    Deadline.merchant_receipt: Action.confirm_receipt,
    Deadline.escalation: Action.expire_escalation,
    Deadline.arbitration_evidence: Action.close_evidence,
}


def deadline_for(state: State, case_type: CaseType, perishable: bool) -> Deadline | None:
    """The deadline a case arms on entering `state`; None for states that wait on nobody (or on the payment)."""
    if state is S.requested:
        if case_type is CaseType.cancel_request:
            return Deadline.cancel_answer
        return Deadline.perishable_answer if perishable else Deadline.standard_answer
    return {
        S.negotiating: Deadline.customer_confirm,
        S.awaiting_return: Deadline.return_shipment,
        S.return_in_transit: Deadline.merchant_receipt,
        S.rejected: Deadline.escalation,
        S.in_arbitration: Deadline.arbitration_evidence,
    }.get(state)


class Evidence(StrEnum):
    none = "none"
    text = "text"  # a description of at least a few characters
    photo = "photo"  # at least one uploaded image


@dataclass(frozen=True)
class Reason:
    title: str
    types: frozenset[CaseType]
    evidence: Evidence = Evidence.none


def _r(title: str, types: set[CaseType], evidence: Evidence = Evidence.none) -> Reason:
    return Reason(title, frozenset(types), evidence)


T = CaseType
# The customer's reasons, scoped by case type (WeChat's `reason` list, Meituan's refund reasons).
REASONS: dict[str, Reason] = {
    "missing_item": _r("少送/漏送", {T.refund_only}, Evidence.text),
    "wrong_item": _r("送错商品", {T.refund_only, T.return_refund, T.exchange}, Evidence.photo),
    "quality_issue": _r("商品质量问题", {T.refund_only, T.return_refund, T.exchange}, Evidence.photo),
    "damaged_in_delivery": _r("洒漏/破损", {T.refund_only, T.return_refund, T.exchange}, Evidence.photo),
    "not_received": _r("未收到货", {T.refund_only}, Evidence.text),
    "late_delivery": _r("送达超时", {T.refund_only}),
    "not_as_described": _r("与描述不符", {T.return_refund}, Evidence.photo),
    "no_longer_wanted": _r("不想要了", {T.return_refund}),
    "wrong_size": _r("尺码/规格不合适", {T.exchange}),
    "ordered_by_mistake": _r("点错了", {T.cancel_request}),
    "too_slow": _r("出餐太慢", {T.cancel_request}),
    "other": _r("其他", {T.refund_only, T.return_refund, T.exchange, T.cancel_request}, Evidence.text),
    "delivery_failed": _r("配送失败", {T.non_delivery}),
}
# The merchant's rejection reasons, scoped the same way (WeChat `rejectreason/get` and its `reject_scene`).
REJECT_REASONS: dict[str, Reason] = {
    "delivered_as_ordered": _r("商品已按订单送达", {T.refund_only}, Evidence.text),
    "no_quality_issue": _r("商品无质量问题", {T.refund_only, T.return_refund, T.exchange}, Evidence.photo),
    "not_resellable": _r("退回商品影响二次销售", {T.return_refund, T.exchange}, Evidence.photo),
    "wrong_return_item": _r("退回的不是本单商品", {T.return_refund, T.exchange}, Evidence.photo),
    "already_prepared": _r("商品已制作", {T.cancel_request}),
    "already_picked_up": _r("骑手已取餐", {T.cancel_request}),
    "other": _r("其他", {T.refund_only, T.return_refund, T.exchange, T.cancel_request}, Evidence.text),
}
# A "never arrived" claim: against an order with a proof of delivery it goes to arbitration, never auto-approved.
NEVER_ARRIVED = "not_received"
# The pseudo-line a case names to ask for the delivery fee back.
DELIVERY_FEE_LINE = "delivery_fee"
