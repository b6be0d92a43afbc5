"""The notices a customer gets, which event states each, and the facts a merchant's template fills its fields with.

A notice is keyed by (order, key): the key names the order state, so a redelivered event, or a second rider's
assignment after a reassignment, finds the notice already there and adds nothing. A refund and an after-sales
decision key on the refund and the case, as an order may have several.

When the delivery went through WeChat's legacy 即时配送 API, WeChat sends the customer its own delivery cards, so the
four delivery notices are kept as `suppressed` rather than sent a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
# The carrier whose API notifies customers by itself (services/dispatch/carriers/wechat.py).
SELF_NOTIFYING_CARRIERS = frozenset({"wechat_legacy"})


class NoticeKind(StrEnum):
    paid = "paid"
    accepted = "accepted"
    rejected = "rejected"
    ready_for_pickup = "ready_for_pickup"
    refunded = "refunded"
    rider_accepted = "rider_accepted"
    delivering = "delivering"
    delivered = "delivered"
    delivery_problem = "delivery_problem"
    aftersales_decision = "aftersales_decision"


# The status a notice shows, within WeChat's `phrase` (≤ 5 汉字), and the inbox's title for it.
STATUS_PHRASE: dict[NoticeKind, str] = {
    NoticeKind.paid: "已支付",
    NoticeKind.accepted: "商家已接单",
    NoticeKind.rejected: "商家已拒单",
    NoticeKind.ready_for_pickup: "待取餐",
    NoticeKind.refunded: "已退款",
    NoticeKind.rider_accepted: "骑手已接单",
    NoticeKind.delivering: "配送中",
    NoticeKind.delivered: "已送达",
    NoticeKind.delivery_problem: "配送异常",
    NoticeKind.aftersales_decision: "售后已处理",
}

# The facts a template field may be filled with (`NoticeTemplate.fields` maps a keyword to one of these).
FACTS = (
    "order_no",
    "store_name",
    "status",
    "time",
    "amount",
    "rider_name",
    "rider_phone",
    "eta",
    "remark",
    "pickup_no",
    "case_no",
)


@dataclass(frozen=True)
class Occasion:
    """A notice an event gives rise to: its kind, its key within the order, and the facts particular to it."""

    kind: NoticeKind
    key: str
    facts: dict[str, str]


def wechat_time(at: datetime) -> str:
    """A time as WeChat's `time`/`date` keywords take it: `2026年11月22日 15:01`, in China's time."""
    local = at.astimezone(SHANGHAI)
    return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"


def yuan(fen: int) -> str:
    """Money as WeChat's `amount` keyword takes it (a currency sign, then the figure)."""
    return f"¥{fen / 100:.2f}"


def pickup_number(order_id: str) -> str:
    """The short number a counter calls out: the order number's last four characters."""
    return order_id[-4:].upper()


def base_facts(*, order_id: str, store_name: str, kind: NoticeKind, at: datetime) -> dict[str, str]:
    return {
        "order_no": order_id,
        "store_name": store_name,
        "status": STATUS_PHRASE[kind],
        "time": wechat_time(at),
    }
