"""What a principal limited to one order (a tracking link's) may reach through the gateway: reads of that order,
its history, its deliveries, its codes, its live stream, and the public profile of a store. Any other path or
method is refused here, before any service sees the request; the services limit such a principal to its order
again (defence in depth) and hide the customer's address, contact and note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs

from shared.auth import READ_METHODS, Principal
from shared.errors import Forbidden

_ORDER = "(?P<order>[^/]+)"


@dataclass(frozen=True)
class OrderPath:
    path: re.Pattern[str]
    # Query parameters it may carry; `order_id`, when named here, must be the principal's order.
    query: frozenset[str] = frozenset()


READS: tuple[OrderPath, ...] = (
    OrderPath(re.compile(rf"^/v1/orders/{_ORDER}$")),
    OrderPath(re.compile(rf"^/v1/orders/{_ORDER}/history$")),
    OrderPath(re.compile(r"^/v1/deliveries$"), frozenset({"order_id", "offset", "limit"})),
    OrderPath(re.compile(r"^/v1/codes$"), frozenset({"order_id", "offset", "limit"})),
    OrderPath(re.compile(rf"^/v1/notifications/streams/orders/{_ORDER}$"), frozenset({"after"})),
    # Any token reads a store's public profile (where the page draws the store).
    OrderPath(re.compile(r"^/v1/stores/[^/]+$")),
)


def check_order_scoped(principal: Principal, method: str, path: str, query: bytes) -> None:
    """Refuses (403) a request of a principal limited to one order that is not a read of that order."""
    if principal.order_id is None:
        return
    if method in READ_METHODS:
        try:
            params = parse_qs(query.decode("ascii"), keep_blank_values=True, strict_parsing=bool(query))
        except (UnicodeDecodeError, ValueError):
            params = {"": []}  # matches no read's parameters
        for read in READS:
            match = read.path.match(path)
            if match is None or not set(params) <= read.query:
                continue
            named = match.groupdict().get("order")
            if named is not None and named != principal.order_id:
                continue
            if "order_id" in read.query and params.get("order_id") != [principal.order_id]:
                continue
            return
    raise Forbidden("A tracking link's token reads its own order only")
