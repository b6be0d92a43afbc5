from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.events.topics import events_topic
from shared.settings import ServiceSettings


class RedemptionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REDEMPTION_", extra="ignore")
    service_name: ClassVar[str] = "redemption"

    consumes: list[str] = [events_topic("order"), events_topic("dispatch")]

    # Order codes (pickup, finish) stay valid this long after issue; expiry is a durable timer.
    order_code_valid_hours: float = 72.0
    # A redemption can be reversed within this window, and a code redeemed and reversed at most this many times.
    reversal_window_minutes: int = 60
    max_cycles: int = 10
    # Brute-force defence: this many failed attempts within the window lock the store, device or principal.
    lockout_failures: int = 5
    lockout_window_minutes: int = 10
    lockout_minutes: int = 30
    max_count_per_request: int = 10
    # The codes' QR secrets are sealed with this key (32 bytes, url-safe base64). Required.
    vault_key: str = ""
    # Dispatch's public key(s) (PEM, several concatenated during rotation) that sign own-rider handover vouchers.
    # Required: a rider redeems a finish code only with dispatch's voucher for the delivery.
    handover_public_keys: str = ""
