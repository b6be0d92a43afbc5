from __future__ import annotations

from fastapi import FastAPI

from services.redemption import router
from services.redemption.handlers import RedemptionReactions
from services.redemption.settings import RedemptionSettings
from shared.clock import Clock, SystemClock
from shared.handover import VoucherVerifier
from shared.logging import configure_logging
from shared.service import build_service_app
from shared.vault import Vault


def create_app(settings: RedemptionSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The redemption service. Without settings (as uvicorn's factory) it reads REDEMPTION_* from the environment."""
    if settings is None:
        settings = RedemptionSettings()
        configure_logging(settings.service_name, settings.log_level)
    clock = clock or SystemClock()
    vault = Vault(settings.vault_key, "REDEMPTION_VAULT_KEY")
    vouchers = VoucherVerifier(settings.handover_public_keys)
    reactions = RedemptionReactions(settings=settings, clock=clock, vault=vault)
    app = build_service_app(
        settings,
        title="Songda redemption",
        description="Pickup and finish codes, vouchers, rotating QR tokens, the redemption ledger and its audit log.",
        routers=[router.router],
        event_handlers=reactions.event_handlers(),
        timer_handlers=reactions.timer_handlers(),
        clock=clock,
    )
    app.state.reactions = reactions
    app.state.vault = vault
    app.state.vouchers = vouchers
    return app
