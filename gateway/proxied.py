"""The proxied routes, answered in front of FastAPI's router: admission, the route's token and role checks (and, for a
tracking link's token, the one order it reads), the principal's rate limit, then the upstream.

A proxied request needs none of FastAPI's per-route machinery (path matching over every route, dependency solving,
exit stacks, the exception middleware), which cost more than the proxying itself; the checks are the same, in the
same order, and a refusal is rendered as the app's error handlers render it (problem+json). Whatever else the
gateway answers (its own routes, a path no route serves) goes on to FastAPI.
"""

from __future__ import annotations

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.admission import admit
from gateway.proxy import UpstreamProxy
from gateway.ratelimit import TokenBucketLimiter
from gateway.routes import PROXY_METHODS, Route, find_route, is_public
from gateway.tracking_scope import check_order_scoped
from shared.auth import TokenVerifier, bearer_token
from shared.errors import Forbidden, ServiceError, TooManyRequests, render


class ProxiedRoutes:
    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = find_route(scope["path"]) if scope["type"] == "http" and scope["method"] in PROXY_METHODS else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # the label of the request's metrics
        request = Request(scope, receive)
        try:
            response = await self._answer(request, route)
        except ServiceError as error:
            response = render(request, error)
        await response(scope, receive, send)

    async def _answer(self, request: Request, route: Route) -> Response:
        state = self.state
        path: str = request.scope["path"]  # canonical: CanonicalPathMiddleware refused any other
        admit(state, path, request.headers.get("content-length"))
        # CORS preflights never get here (the CORS middleware answers them): any other method needs a token.
        if not is_public(path):
            verifier: TokenVerifier = state.token_verifier
            principal = await verifier.verify(bearer_token(request))
            if principal.role not in route.roles:
                raise Forbidden(f"Role {principal.role} may not use {route.prefix}")
            check_order_scoped(principal, request.scope["method"], path, request.scope["query_string"])
            limiter: TokenBucketLimiter = state.principal_limiter
            wait = limiter.take(f"{principal.role}:{principal.sub}")
            if wait is not None:
                raise TooManyRequests(retry_after=wait)
        proxy: UpstreamProxy = state.proxy
        return await proxy.forward(request, state.upstreams[route.service])
