from __future__ import annotations

from fastapi import FastAPI

from services.notify.settings import NotifySettings
from shared.clock import Clock
from shared.logging import configure_logging
from shared.service import build_service_app


def create_app(settings: NotifySettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The notify service. Without settings (as uvicorn's factory) it reads NOTIFY_* from the environment."""
    if settings is None:
        settings = NotifySettings()
        configure_logging(settings.service_name, settings.log_level)
    return build_service_app(
        settings,
        title="Songda notify",
        description="Subscribe-message grants, SMS fallback, merchant webhooks, in-app inbox.",
        clock=clock,
    )
