from __future__ import annotations

from fastapi import FastAPI

from services.aftersales.settings import AftersalesSettings
from shared.clock import Clock
from shared.logging import configure_logging
from shared.service import build_service_app


def create_app(settings: AftersalesSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The aftersales service. Without settings (as uvicorn's factory) it reads AFTERSALES_* from the environment."""
    if settings is None:
        settings = AftersalesSettings()
        configure_logging(settings.service_name, settings.log_level)
    return build_service_app(
        settings,
        title="Songda aftersales",
        description="After-sales cases, their deadlines, arbitration and compensation.",
        clock=clock,
    )
