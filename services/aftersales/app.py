"""The aftersales service: after-sales cases, their deadlines, arbitration and compensation."""

from __future__ import annotations

from fastapi import FastAPI

from services.aftersales import router
from services.aftersales.cases import Cases
from services.aftersales.handlers import AftersalesReactions
from services.aftersales.settings import AftersalesSettings
from shared.clock import Clock, SystemClock
from shared.logging import configure_logging
from shared.service import build_service_app


def create_app(settings: AftersalesSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The aftersales service. Without settings (as uvicorn's factory) it reads AFTERSALES_* from the environment."""
    if settings is None:
        settings = AftersalesSettings()
        configure_logging(settings.service_name, settings.log_level)
    clock = clock or SystemClock()
    cases = Cases(settings, clock)
    reactions = AftersalesReactions(cases, clock)
    app = build_service_app(
        settings,
        title="Songda aftersales",
        description="After-sales cases, their deadlines, arbitration and compensation.",
        routers=[router.router],
        event_handlers=reactions.event_handlers(),
        timer_handlers=reactions.timer_handlers(),
        clock=clock,
    )
    app.state.cases = cases
    app.state.reactions = reactions
    return app
