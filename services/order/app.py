from __future__ import annotations

from fastapi import FastAPI

from services.order.settings import OrderSettings
from shared.clock import Clock
from shared.logging import configure_logging
from shared.service import build_service_app


def create_app(settings: OrderSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The order service. Without settings (as uvicorn's factory) it reads ORDER_* from the environment."""
    if settings is None:
        settings = OrderSettings()
        configure_logging(settings.service_name, settings.log_level)
    return build_service_app(
        settings,
        title="Songda order",
        description="Merchants, stores, catalogue, orders, payments and reviews.",
        clock=clock,
    )
