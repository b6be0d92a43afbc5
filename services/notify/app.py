"""The notify service: customer notices on subscribe-message grants with an SMS stand-in, signed merchant webhooks,
the in-app inbox and live streams of orders and stores."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from services.notify import push_router, router, stream_router, webhook_router
from services.notify.channels.sms import TencentSms
from services.notify.channels.wechat import WeChatApi
from services.notify.courier import Courier
from services.notify.handlers import NotifyReactions
from services.notify.hub import StreamHub
from services.notify.janitor import Janitor
from services.notify.senders import SmsSender, WechatSender
from services.notify.settings import NotifySettings
from services.notify.webhook_sender import WebhookSender
from services.notify.webhooks import Secrets
from shared.clock import Clock, SystemClock
from shared.logging import configure_logging
from shared.service import build_service_app
from shared.vault import Vault


def create_app(settings: NotifySettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The notify service. Without settings (as uvicorn's factory) it reads NOTIFY_* from the environment."""
    if settings is None:
        settings = NotifySettings()
        configure_logging(settings.service_name, settings.log_level)
    clock = clock or SystemClock()
    secrets = Secrets(Vault(settings.vault_key, "NOTIFY_VAULT_KEY"))
    providers = httpx.AsyncClient(timeout=10.0)
    # Merchants' endpoints: its own pool, redirects never followed, addresses checked before each call.
    endpoints = httpx.AsyncClient(timeout=settings.webhook_timeout_seconds, follow_redirects=False)
    wechat = WechatSender(
        WeChatApi(providers, appid=settings.wechat_appid, secret=settings.wechat_secret, url=settings.wechat_api_url,
                  refresh_margin_seconds=settings.wechat_token_refresh_margin_seconds),
        settings.wechat_miniprogram_state,
    )  # fmt: skip
    sms = SmsSender(
        TencentSms(providers, secret_id=settings.sms_secret_id, secret_key=settings.sms_secret_key,
                   sdk_app_id=settings.sms_sdk_app_id, sign_name=settings.sms_sign_name, region=settings.sms_region,
                   url=settings.sms_url)
    )  # fmt: skip
    reactions = NotifyReactions(settings, clock)

    def courier(app: FastAPI) -> Courier:
        return Courier(settings, app.state.sessionmaker, clock, wechat, sms, engine=app.state.engine)

    def webhook_sender(app: FastAPI) -> WebhookSender:
        return WebhookSender(settings, app.state.sessionmaker, clock, endpoints, secrets, engine=app.state.engine)

    async def run_courier(app: FastAPI) -> None:
        await courier(app).run()

    async def run_webhooks(app: FastAPI) -> None:
        await webhook_sender(app).run()

    async def run_janitor(app: FastAPI) -> None:
        await Janitor(settings, app.state.sessionmaker, clock).run()

    async def close_hub() -> None:
        hub: StreamHub | None = getattr(app.state, "stream_hub", None)
        if hub is not None:
            await hub.close()

    app = build_service_app(
        settings,
        title="Songda notify",
        description="Customer notices (WeChat subscribe messages, SMS), merchant webhooks, in-app inbox, live streams.",
        routers=[router.router, webhook_router.router, stream_router.router, push_router.router],
        event_handlers=reactions.event_handlers(),
        clock=clock,
        http_clients=[providers, endpoints],
        workers={"courier": run_courier, "webhooks": run_webhooks, "janitor": run_janitor},
        closing=[close_hub],
    )
    app.state.webhook_secrets = secrets
    app.state.reactions = reactions
    # Built on first use (the engine exists once the app has started): tests and the workers alike.
    app.state.courier = courier
    app.state.webhook_sender = webhook_sender
    return app
