from __future__ import annotations

from fastapi import FastAPI

from services.dispatch.settings import DispatchSettings
from shared.clock import Clock
from shared.logging import configure_logging
from shared.service import build_service_app


def create_app(settings: DispatchSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The dispatch service. Without settings (as uvicorn's factory) it reads DISPATCH_* from the environment."""
    if settings is None:
        settings = DispatchSettings()
        configure_logging(settings.service_name, settings.log_level)
    return build_service_app(
        settings,
        title="Songda dispatch",
        description="Deliveries, carrier adapters and accounts, own-fleet riders, carrier callbacks.",
        clock=clock,
    )
