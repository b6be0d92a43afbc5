from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.events.topics import events_topic
from shared.settings import ServiceSettings


class OrderSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDER_", extra="ignore")
    service_name: ClassVar[str] = "order"

    consumes: list[str] = [events_topic("dispatch"), events_topic("redemption"), events_topic("aftersales")]

    # Deadlines (durable timers).
    unpaid_cancel_minutes: int = 15
    auto_complete_hours: float = 24.0

    # WeChat Pay v3. The launcher points these at the local sandbox; production sets the real values.
    wechatpay_base_url: str = "https://api.mch.weixin.qq.com"
    wechatpay_mchid: str = ""
    wechatpay_appid: str = ""
    wechatpay_merchant_serial_no: str = ""
    wechatpay_merchant_private_key: str = ""  # PEM, or ..._file
    wechatpay_merchant_private_key_file: str = ""
    wechatpay_platform_public_key_id: str = ""  # the "微信支付公钥" id (PUB_KEY_ID_...)
    wechatpay_platform_public_key: str = ""  # PEM
    wechatpay_apiv3_key: str = ""
    # Where WeChat Pay sends notifications: the gateway's public /v1/payments/wechatpay/callback.
    wechatpay_notify_url: str = ""
    wechatpay_timeout_seconds: float = 10.0
    # The notification endpoint is public: bodies above this are refused (413); a refused notification keeps only
    # its digest, size and this many leading bytes, for this many days.
    notification_max_body_bytes: int = 64 * 1024
    refused_notification_prefix_bytes: int = 2048
    refused_retention_days: float = 7.0
    notification_prune_minutes: float = 60.0

    def merchant_private_key_pem(self) -> str:
        if self.wechatpay_merchant_private_key:
            return self.wechatpay_merchant_private_key
        if self.wechatpay_merchant_private_key_file:
            return Path(self.wechatpay_merchant_private_key_file).read_text()
        return ""
