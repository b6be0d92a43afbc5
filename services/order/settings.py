from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.events.topics import events_topic
from shared.settings import ServiceSettings


class OrderSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDER_", extra="ignore")
    service_name: ClassVar[str] = "order"

    consumes: list[str] = [events_topic("dispatch"), events_topic("redemption"), events_topic("aftersales")]
