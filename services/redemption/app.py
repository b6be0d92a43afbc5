from __future__ import annotations

from fastapi import FastAPI

from services.redemption.settings import RedemptionSettings
from shared.clock import Clock
from shared.logging import configure_logging
from shared.service import build_service_app


def create_app(settings: RedemptionSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The redemption service. Without settings (as uvicorn's factory) it reads REDEMPTION_* from the environment."""
    if settings is None:
        settings = RedemptionSettings()
        configure_logging(settings.service_name, settings.log_level)
    return build_service_app(
        settings,
        title="Songda redemption",
        description="Pickup and finish codes, vouchers, the redemption ledger and its audit log.",
        clock=clock,
    )
