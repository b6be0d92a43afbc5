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

    # --- outbound channels (services/notify/channels/) ---------------------------------------------------------
    # WeChat's server API for the mini-program: access tokens and subscribeMessage.send.
    wechat_api_url: str = "https://api.weixin.qq.com"
    wechat_appid: str = ""
    wechat_secret: str = ""
    # The cached access token is fetched again this long before WeChat says it expires.
    wechat_token_refresh_margin_seconds: float = 300.0
    # Which version of the mini-program a card opens: developer | trial | formal.
    wechat_miniprogram_state: str = "formal"
    # Tencent Cloud SMS (SendSms, API 3.0), the fallback when no grant is left.
    sms_url: str = "https://sms.tencentcloudapi.com/"
    sms_secret_id: str = ""
    sms_secret_key: str = ""
    sms_sdk_app_id: str = ""
    sms_sign_name: str = ""
    sms_region: str = "ap-guangzhou"
