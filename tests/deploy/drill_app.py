"""A service for the shutdown drill (tests/deploy/test_graceful_shutdown.py), served by `songda serve
tests.deploy.drill_app:create_app` in a process of its own: it consumes `drill.ping.v1` events with a slow handler
that notes when it starts each one, and answers each with a `drill.ponged.v1` in its outbox, in the same transaction
as the inbox row."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

from fastapi import FastAPI
from pydantic_settings import SettingsConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.consumer import EventHandler
from shared.events.envelope import Envelope, new_event
from shared.events.outbox import add_event
from shared.service import build_service_app
from shared.settings import ServiceSettings


class DrillSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DRILL_", extra="ignore")
    service_name: ClassVar[str] = "drill"

    handler_seconds: float = 0.0
    # Each handling appends the event's id here before it starts its work.
    started_file: str = ""


def _note(path: Path, event_id: str) -> None:
    with path.open("a") as started:
        started.write(f"{event_id}\n")


def pong_handler(settings: DrillSettings) -> EventHandler:
    async def pong(session: AsyncSession, event: Envelope) -> None:
        if settings.started_file:
            await asyncio.to_thread(_note, Path(settings.started_file), str(event.id))
        await add_event(session, new_event("drill.ponged.v1", source="drill", subject=event.subject, data={}))
        await asyncio.sleep(settings.handler_seconds)

    return pong


def create_app() -> FastAPI:
    settings = DrillSettings()
    return build_service_app(
        settings,
        title="Songda shutdown drill",
        description="Consumes drill.ping.v1 slowly.",
        event_handlers={"drill.ping.v1": pong_handler(settings)},
    )
