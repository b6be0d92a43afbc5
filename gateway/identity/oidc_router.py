"""POST /v1/auth/oidc/exchange: a merchant's OpenID Connect token in, a Songda access token out."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request

from gateway.auth import TokenIssuer, TokenRead
from gateway.identity.oidc import OidcProvider
from gateway.identity.schemas import OidcExchange
from shared.clock import AppClock
from shared.errors import Unauthorized


def oidc_router() -> APIRouter:
    router = APIRouter(tags=["auth"])

    @router.post("/v1/auth/oidc/exchange", summary="Exchange a token of the merchant's identity provider")
    async def exchange(body: OidcExchange, request: Request, clock: AppClock) -> TokenRead:
        provider: OidcProvider = request.app.state.oidc
        issuer: TokenIssuer = request.app.state.token_issuer
        principal, expires_at = await provider.verify(body.token)
        # No longer than the provider's own token, nor than a staff access token.
        ttl = min(
            request.app.state.settings.staff_access_token_ttl_seconds, math.floor(expires_at - clock.now().timestamp())
        )
        if ttl < 1:
            raise Unauthorized("Token expired")
        return TokenRead(
            access_token=issuer.issue(principal, ttl), expires_in=ttl, role=principal.role, sub=principal.sub
        )

    return router
