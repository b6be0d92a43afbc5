"""The routing table: path prefix → upstream service, with the roles admitted at the gateway.

The gateway's role check is coarse (which kinds of caller may reach a resource at all); each service still
decides what a principal may see and do. Public paths carry no JWT: their services verify the caller's signature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.auth import Role

EVERYONE = frozenset(Role)
STAFF = frozenset({Role.merchant, Role.ops, Role.service})


@dataclass(frozen=True)
class Route:
    prefix: str
    service: str
    roles: frozenset[Role]

    def matches(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")


ROUTES: tuple[Route, ...] = (
    Route("/v1/stores", "order", EVERYONE),
    Route("/v1/products", "order", EVERYONE),
    Route("/v1/orders", "order", STAFF | {Role.customer}),
    Route("/v1/payments", "order", STAFF | {Role.customer}),
    Route("/v1/reviews", "order", EVERYONE),
    Route("/v1/deliveries", "dispatch", EVERYONE),
    Route("/v1/riders", "dispatch", STAFF | {Role.rider}),
    Route("/v1/carriers", "dispatch", STAFF),
    Route("/v1/codes", "redemption", EVERYONE),
    Route("/v1/redemptions", "redemption", STAFF | {Role.rider}),
    Route("/v1/aftersales", "aftersales", STAFF | {Role.customer}),
    Route("/v1/notifications", "notify", STAFF | {Role.customer, Role.rider}),
    Route("/v1/subscriptions", "notify", STAFF | {Role.customer}),
    Route("/v1/webhooks", "notify", STAFF),
)

# Callbacks from carriers and the payment provider: authenticated by their signatures in the service.
PUBLIC_PATHS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^/v1/carriers/[A-Za-z0-9_-]+/callback$"),
    re.compile(r"^/v1/payments/[A-Za-z0-9_-]+/callback$"),
)


def find_route(path: str) -> Route | None:
    return next((route for route in ROUTES if route.matches(path)), None)


def is_public(path: str) -> bool:
    return any(pattern.match(path) for pattern in PUBLIC_PATHS)
