"""Pure ASGI middleware (no body buffering, so streamed responses stay streamed)."""

from __future__ import annotations

import ipaddress
import re
import secrets
import time
from collections.abc import Sequence
from functools import lru_cache

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import context, metrics

REQUEST_ID_HEADER = "x-request-id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """Parses a setting's CIDRs (a bare address is a /32 or /128); a malformed one fails at start-up."""
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return None


def _within(address: str, trusted: Sequence[Network]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in trusted)


@lru_cache(maxsize=4096)  # a few peers and forwarding chains make most requests: parsing addresses is not free
def client_address(peer: str | None, forwarded_for: str, trusted: tuple[Network, ...]) -> str | None:
    """The client: the TCP peer, unless the peer is a trusted proxy; then the `X-Forwarded-For` hops are read from
    the right (each appended by the proxy that saw it) while the hop so far is trusted. Only trusted proxies'
    entries are believed: whatever the client wrote itself sits further left and is never reached. A malformed
    entry stops the walk at the proxy that passed it on."""
    address = _address(peer) if peer else None
    if address is None:
        return peer
    for hop in reversed([entry for entry in forwarded_for.split(",") if entry.strip()]):
        if not _within(address, trusted):
            break
        parsed = _address(hop)
        if parsed is None:
            break
        address = parsed
    return address


class RequestContextMiddleware:
    """Takes `X-Request-ID` from the caller (or makes one), uses it as the correlation id and echoes it back, and
    decides the client's address (`context.client_address`), believing `X-Forwarded-For` only from `trusted_proxies`.

    Also counts the request in the HTTP metrics, labelled by route template rather than raw path.
    """

    def __init__(self, app: ASGIApp, service: str, trusted_proxies: Sequence[Network] = ()) -> None:
        self.app = app
        self.service = service
        self.trusted_proxies = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        forwarded: list[str] = []
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
            elif name == b"x-forwarded-for":
                forwarded.append(value.decode("latin-1"))
        request_id = incoming if _VALID_ID.match(incoming) else secrets.token_hex(16)
        token = context.correlation_id.set(request_id)
        forwarded_for = ",".join(forwarded)
        peer = scope["client"][0] if scope.get("client") else None
        address_token = context.client_address.set(client_address(peer, forwarded_for, self.trusted_proxies))
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            metrics.observe_request(self.service, scope["method"], template, status, time.perf_counter() - started)
            context.correlation_id.reset(token)
            context.client_address.reset(address_token)
