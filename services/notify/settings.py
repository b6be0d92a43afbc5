from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.events.topics import events_topic
from shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")
    service_name: ClassVar[str] = "notify"

    consumes: list[str] = [
        events_topic("order"),
        events_topic("dispatch"),
        events_topic("redemption"),
        events_topic("aftersales"),
    ]
