from __future__ import annotations

import httpx
from fastapi import FastAPI

from services.dispatch import carrier_router, rider_router, router
from services.dispatch.callback_queue import CallbackQueue
from services.dispatch.callbacks import KnownOffers
from services.dispatch.carriers.client import CarrierClient
from services.dispatch.handlers import DispatchReactions
from services.dispatch.service import Dispatcher
from services.dispatch.settings import DispatchSettings
from shared.clock import Clock, SystemClock
from shared.handover import VoucherSigner
from shared.logging import configure_logging
from shared.service import build_service_app
from shared.vault import Vault


def create_app(settings: DispatchSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The dispatch service. Without settings (as uvicorn's factory) it reads DISPATCH_* from the environment."""
    if settings is None:
        settings = DispatchSettings()
        configure_logging(settings.service_name, settings.log_level)
    clock = clock or SystemClock()
    timeout = settings.carrier_timeout_seconds
    http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)))
    carriers = CarrierClient(
        http,
        settings.carrier_base_urls(),
        clock,
        wechat_appid=settings.wechat_appid,
        wechat_secret=settings.wechat_secret,
    )
    dispatcher = Dispatcher(
        settings=settings, clock=clock, carriers=carriers, vault=Vault(settings.vault_key, "DISPATCH_VAULT_KEY")
    )
    reactions = DispatchReactions(dispatcher)

    async def apply_callbacks(app: FastAPI) -> None:
        queue = CallbackQueue(
            dispatcher, app.state.sessionmaker, settings.callback_batch_size, settings.timer_poll_seconds
        )
        await queue.run(app.state.engine)

    vouchers = VoucherSigner(settings.handover_signing_key, settings.handover_voucher_seconds)

    app = build_service_app(
        settings,
        title="Songda dispatch",
        description="Deliveries, carrier adapters and accounts, own-fleet riders, carrier callbacks.",
        routers=[router.router, carrier_router.router, rider_router.router],
        event_handlers=reactions.event_handlers(),
        timer_handlers=reactions.timer_handlers(),
        clock=clock,
        http_clients=[http],
        workers={"callback-apply": apply_callbacks},
    )
    app.state.dispatcher = dispatcher
    app.state.known_offers = KnownOffers()
    app.state.reactions = reactions
    app.state.http = http
    app.state.vouchers = vouchers
    return app
