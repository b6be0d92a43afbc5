"""The routing table: path prefix → upstream service, with the roles admitted at the gateway.

The gateway's role check is coarse (which kinds of caller may reach a resource at all); each service still
decides what a principal may see and do. Public paths carry no JWT: their services verify the caller's signature.

The table is a boundary only if the path it matched is the path the upstream acts on: the gateway routes on the
path decoded once, forwards the raw bytes it was sent (which decode to the same), and refuses a path whose meaning
could change on the way (an encoded `/`, `\\` or `%`, a dot segment, an empty segment, control characters, bytes
that are not UTF-8).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.auth import Role
from shared.errors import BadRequest, render

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

# Callbacks from carriers and the payment provider, and WeChat's message push: authenticated by their signatures
# in the service.
PUBLIC_PATHS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^/v1/carriers/[A-Za-z0-9_-]+/callback$"),
    re.compile(r"^/v1/payments/[A-Za-z0-9_-]+/callback$"),
    re.compile(r"^/v1/notifications/wechat/push$"),
)


def find_route(path: str) -> Route | None:
    return next((route for route in ROUTES if route.matches(path)), None)


def is_public(path: str) -> bool:
    return any(pattern.match(path) for pattern in PUBLIC_PATHS)


_RAW_PATH = re.compile(rb"^/[\x21-\x7e]*$")
_AMBIGUOUS = frozenset("/\\%")


def raw_path(scope: Scope) -> bytes:
    """The path as the client sent it, without the query (some servers include it in `raw_path`)."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        return quote(scope["path"], safe="/:@!$&'()*+,;=-._~").encode()
    return raw.partition(b"?")[0]


def canonical_path(scope: Scope) -> str:
    """The path decoded once; 400 for one that could be read differently upstream or step out of its prefix."""
    raw = raw_path(scope)
    if not _RAW_PATH.match(raw) or b"\\" in raw:
        raise BadRequest("The path must be printable ASCII, starting with /, without backslashes")
    segments = raw[1:].split(b"/")
    decoded: list[str] = []
    for index, segment in enumerate(segments):
        if not segment and index < len(segments) - 1:
            raise BadRequest("The path has an empty segment (//)")
        try:
            text = unquote_to_bytes(segment).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest("The path does not decode to UTF-8") from exc
        if text in (".", ".."):
            raise BadRequest("The path has a dot segment")
        if any(c in _AMBIGUOUS or unicodedata.category(c) in ("Cc", "Cs") for c in text):
            raise BadRequest("The path encodes a separator, a percent sign or a control character")
        decoded.append(text)
    return "/" + "/".join(decoded)


class CanonicalPathMiddleware:
    """Refuses a non-canonical path (400 problem+json) before any route, the gateway's own included, can match it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                canonical_path(scope)
            except BadRequest as refusal:
                await render(None, refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)
