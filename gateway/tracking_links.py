"""Tracking links: a signed, expiring address of the customer tracking page that shows one order only.

A link is minted for the order's customer only (it shows the order's codes as their owner sees them, which staff
must never hold): the gateway asks the order service for the order with the caller's own token (it holds no
privilege of its own), then signs a token for the order's customer limited to that order,
under an audience of its own (`<jwt_audience>:tracking`), so no service takes the link itself as an access token.
The page trades the link for short access tokens (`/v1/auth/tracking/exchange`), each limited to the order as
well: the gateway lets them read that order's paths only (`gateway.tracking_scope`) and the services show them the
order without the customer's address, contact and note. The link travels in the page address's fragment, which
browsers never send to a server, so it stays out of every access log.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Request
from pydantic import AwareDatetime, BaseModel, Field

from gateway.auth import TokenIssuer, TokenRead
from gateway.settings import GatewaySettings
from gateway.upstream import UpstreamClient
from shared import context
from shared.auth import Principal, Role, TokenVerifier, bearer_token
from shared.clock import AppClock
from shared.errors import Forbidden, NotFound, Unauthorized, UpstreamUnavailable

OrderId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["SD2611180123456789012345"])]


def tracking_audience(settings: GatewaySettings) -> str:
    return f"{settings.jwt_audience}:tracking"


class TrackingLinkCreate(BaseModel):
    order_id: OrderId


class TrackingLinkRead(BaseModel):
    url: str = Field(description="The tracking page, the link token in its fragment (`/track/#link=<token>`)")
    expires_at: AwareDatetime


class TrackingExchange(BaseModel):
    link: str = Field(min_length=1, max_length=4096, description="The link token (the fragment's `link=` value)")


async def _readable_order(request: Request, order_id: str) -> dict[str, object]:
    """The order as the order service shows it to the caller's own token; its refusals are the caller's. Asked
    through the gateway's own upstream client, which retries a kept-alive connection the service closed."""
    upstream: UpstreamClient = request.app.state.proxy.client
    base: str = request.app.state.upstreams["order"]
    headers = [
        (b"authorization", request.headers["authorization"].encode("latin-1")),
        (b"x-request-id", (context.correlation_id.get() or "").encode("latin-1")),
    ]
    answer = await upstream.request("GET", base, f"/v1/orders/{quote(order_id, safe='')}".encode(), headers, None)
    try:
        body = await answer.read()
    finally:
        answer.release()
    if answer.status == 200:
        order: dict[str, object] = json.loads(body)
        return order
    if answer.status == 404:
        raise NotFound(f"No order {order_id}")
    if answer.status == 401:
        raise Unauthorized("The order service did not accept the token")
    if answer.status == 403:
        raise Forbidden("The caller may not read this order")
    raise UpstreamUnavailable(f"The order service answered {answer.status}")


def tracking_router(settings: GatewaySettings) -> APIRouter:
    router = APIRouter(tags=["auth"])

    @router.post(
        "/v1/auth/tracking-links",
        status_code=201,
        summary="Sign a link to the tracking page of one order (its customer only)",
    )
    async def mint(body: TrackingLinkCreate, request: Request, clock: AppClock) -> TrackingLinkRead:
        verifier: TokenVerifier = request.app.state.token_verifier
        caller = await verifier.verify(bearer_token(request))
        if caller.order_id is not None:
            raise Forbidden("A tracking link's token cannot sign links")
        # A link shows the order's codes as their owner sees them (digits, QR): signed for staff, it would hand the
        # store the pickup or finish code it must not hold (a finish code redeemed is the proof of handover).
        if caller.role is not Role.customer:
            raise Forbidden("Only the order's customer signs a link to its tracking page")
        order = await _readable_order(request, body.order_id)
        principal = Principal(
            sub=str(order["customer_id"]),
            role=Role.customer,
            merchant_id=str(order["merchant_id"]),
            order_id=str(order["id"]),
        )
        links: TokenIssuer = request.app.state.tracking_link_issuer
        token = links.issue(principal)
        base = settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")
        return TrackingLinkRead(
            url=f"{base}/track/#link={token}", expires_at=clock.now() + timedelta(seconds=links.ttl_seconds)
        )

    @router.post(
        "/v1/auth/tracking/exchange",
        summary="Trade a tracking link for a short access token that reads its order only",
    )
    async def exchange(body: TrackingExchange, request: Request, clock: AppClock) -> TokenRead:
        verifier: TokenVerifier = request.app.state.tracking_link_verifier
        principal, expires_at = await verifier.verify_until(body.link)
        if principal.order_id is None or principal.role is not Role.customer:
            raise Unauthorized("Not a tracking link")
        # No longer than the link itself.
        ttl = min(settings.tracking_access_token_ttl_seconds, math.floor(expires_at - clock.now().timestamp()))
        if ttl < 1:
            raise Unauthorized("Token expired")
        issuer: TokenIssuer = request.app.state.token_issuer
        return TokenRead(
            access_token=issuer.issue(principal, ttl), expires_in=ttl, role=principal.role, sub=principal.sub
        )

    return router
