from __future__ import annotations

import httpx
from fastapi import FastAPI

from services.order import catalogue_router, router
from services.order.handlers import OrderReactions
from services.order.payment import router as payment_router
from services.order.payment.provider import wechatpay_client
from services.order.settings import OrderSettings
from shared.clock import Clock, SystemClock
from shared.logging import configure_logging
from shared.service import build_service_app


def create_app(settings: OrderSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The order service. Without settings (as uvicorn's factory) it reads ORDER_* from the environment."""
    if settings is None:
        settings = OrderSettings()
        configure_logging(settings.service_name, settings.log_level)
    clock = clock or SystemClock()
    http = httpx.AsyncClient(timeout=settings.wechatpay_timeout_seconds)
    payment_client = wechatpay_client(settings, http)
    reactions = OrderReactions(settings=settings, clock=clock, payment_client=payment_client)

    app = build_service_app(
        settings,
        title="Songda order",
        description="Merchants' stores and catalogues, orders, payments (WeChat Pay v3), refunds and reviews.",
        routers=[catalogue_router.router, router.router, payment_router.router],
        event_handlers=reactions.event_handlers(),
        timer_handlers=reactions.timer_handlers(),
        clock=clock,
        http_clients=[http],
    )
    app.state.payment_client = payment_client
    app.state.reactions = reactions
    return app
