from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gateway.admission import admit
from gateway.auth import TokenIssuer, auth_router, load_signing_key
from gateway.console.router import install_console
from gateway.identity.setup import install_identity
from gateway.openapi import OpenApiAggregator
from gateway.proxied import ProxiedRoutes
from gateway.proxy import UpstreamProxy
from gateway.ratelimit import AdmissionLimits, TokenBucketLimiter
from gateway.routes import PROXY_METHODS, CanonicalPathMiddleware, is_public
from gateway.settings import GatewaySettings
from gateway.tracking_links import tracking_audience, tracking_router
from gateway.upstream import UpstreamClient
from gateway.wechat import Code2Session, SandboxCode2Session, WeChatCode2Session
from shared import metrics
from shared.auth import TokenVerifier, VerificationKey
from shared.clock import Clock, SystemClock
from shared.errors import NotFound, install_error_handlers, problem_response
from shared.input_guard import InputGuardMiddleware
from shared.logging import configure_logging
from shared.middleware import RequestContextMiddleware, networks
from shared.tracing import configure_tracing, trace_app


async def _admit_request(request: Request) -> None:
    """Admission (rate limit, body size) for the gateway's own routes; proxied ones pass it in `ProxiedRoutes`."""
    admit(request.app.state, request.url.path, request.headers.get("content-length"))


def create_app(settings: GatewaySettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The gateway. Without settings (as uvicorn's factory) it reads GATEWAY_* from the environment."""
    if settings is None:
        settings = GatewaySettings()
        configure_logging("gateway", settings.log_level, access_log=settings.access_log)
    configure_tracing("gateway")
    clock = clock or SystemClock()
    signing_key = load_signing_key(settings)
    upstreams = settings.upstreams()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.upstream_timeout_seconds, connect=settings.upstream_connect_timeout_seconds)
        limits = httpx.Limits(
            max_connections=settings.upstream_pool_size, max_keepalive_connections=settings.upstream_pool_size
        )
        upstream = UpstreamClient(
            pool_size=settings.upstream_pool_size,
            timeout_seconds=settings.upstream_timeout_seconds,
            connect_timeout_seconds=settings.upstream_connect_timeout_seconds,
            keepalive_seconds=settings.upstream_keepalive_seconds,
        )
        async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as client:
            app.state.proxy = UpstreamProxy(upstream, settings.max_body_bytes, settings.upstream_buffer_bytes)
            app.state.openapi = OpenApiAggregator(app, client, upstreams)
            code2session: Code2Session = (
                WeChatCode2Session(
                    client,
                    api_base=settings.wechat_api_base,
                    appid=settings.wechat_appid,
                    secret=settings.wechat_secret,
                )
                if settings.wechat_mode == "wechat"
                else SandboxCode2Session(settings.wechat_appid)
            )
            app.state.code2session = code2session
            app.state.http = client
            try:
                yield
            finally:
                await upstream.close()

    app = FastAPI(
        title="Songda gateway",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(_admit_request)],
        # FastAPI's own OpenTelemetry hooks off: the gateway's server spans are shared.tracing's (trace_app), when
        # tracing is on; on, these looked the global providers up on every request, even to find them unconfigured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.upstreams = upstreams
    app.state.token_issuer = TokenIssuer(
        signing_key,
        key_id=settings.signing_key_id,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.token_ttl_seconds,
        clock=clock,
    )
    own_keys = [VerificationKey(signing_key.public_key(), settings.signing_key_id)]
    app.state.token_verifier = TokenVerifier(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        public_keys=own_keys,
        public_keys_pem=settings.previous_public_keys,
    )
    # Tracking links: signed by the same key under an audience of their own, so no service takes one for an access
    # token, nor this verifier an access token for a link.
    app.state.tracking_link_issuer = TokenIssuer(
        signing_key,
        key_id=settings.signing_key_id,
        issuer=settings.jwt_issuer,
        audience=tracking_audience(settings),
        ttl_seconds=settings.tracking_link_ttl_seconds,
        clock=clock,
    )
    app.state.tracking_link_verifier = TokenVerifier(
        issuer=settings.jwt_issuer,
        audience=tracking_audience(settings),
        public_keys=own_keys,
        public_keys_pem=settings.previous_public_keys,
    )
    app.state.admission_limits = AdmissionLimits(
        ip=TokenBucketLimiter(settings.rate_limit_ip_per_second, settings.rate_limit_ip_burst),
        callback=TokenBucketLimiter(settings.rate_limit_callback_per_second, settings.rate_limit_callback_burst),
        is_callback=is_public,
    )
    app.state.principal_limiter = TokenBucketLimiter(
        settings.rate_limit_principal_per_second, settings.rate_limit_principal_burst
    )
    install_error_handlers(app)
    trace_app(app)
    app.add_middleware(ProxiedRoutes, state=app.state)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=sorted(PROXY_METHODS),
        allow_headers=["authorization", "content-type", "idempotency-key", "x-request-id", "traceparent"],
        expose_headers=["x-request-id", "retry-after"],
        max_age=600,
    )
    app.add_middleware(CanonicalPathMiddleware)
    app.add_middleware(InputGuardMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, service="gateway", trusted_proxies=networks(settings.trusted_proxies))
    app.include_router(auth_router(settings))
    app.include_router(tracking_router(settings))
    install_identity(app, settings, clock)
    _add_operational_routes(app)
    install_console(app)
    _add_unrouted(app)
    return app


def _add_operational_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"], summary="Liveness of the gateway itself")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "gateway"}

    @app.get("/readyz", tags=["operations"], summary="Readiness of every upstream service")
    async def readyz(request: Request) -> Response:
        client: httpx.AsyncClient = request.app.state.http

        async def probe(service: str, base: str) -> tuple[str, dict[str, Any]]:
            try:
                response = await client.get(f"{base}/readyz", timeout=3.0)
                body = response.json()
                checks = body.get("checks", {})
                return service, {"ready": response.status_code == 200, "checks": checks}
            except (httpx.HTTPError, ValueError) as exc:
                return service, {"ready": False, "error": type(exc).__name__}

        upstreams: dict[str, str] = request.app.state.upstreams
        results = dict(await asyncio.gather(*(probe(s, u) for s, u in upstreams.items())))
        if all(r["ready"] for r in results.values()):
            return JSONResponse({"status": "ready", "upstreams": results})
        not_ready = sorted(s for s, r in results.items() if not r["ready"])
        return problem_response(
            request,
            status=503,
            code="not-ready",
            title="Some services are not ready",
            detail="Not ready: " + ", ".join(not_ready),
            extra={"upstreams": results},
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return metrics.exposition()

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request) -> JSONResponse:
        aggregator: OpenApiAggregator = request.app.state.openapi
        return JSONResponse(await aggregator.document())

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Songda API")


def _add_unrouted(app: FastAPI) -> None:
    @app.api_route("/{path:path}", methods=sorted(PROXY_METHODS), include_in_schema=False)
    async def unrouted(request: Request) -> Response:
        raise NotFound(f"No route for {request.url.path}")
