from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.events.topics import events_topic
from shared.settings import ServiceSettings

# Standard Webhooks' example schedule (NOTIFY.md 2.3): immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h,
# 24 h after the previous attempt (about 75 h in all), then the message is failed.
WEBHOOK_SCHEDULE_SECONDS = [0.0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")
    service_name: ClassVar[str] = "notify"

    consumes: list[str] = [
        events_topic("order"),
        events_topic("dispatch"),
        events_topic("redemption"),
        events_topic("aftersales"),
    ]

    # Seals webhook signing secrets at rest (shared/vault.py; `songda keys` style: 32 random bytes, base64).
    vault_key: str = ""

    # --- customer notices ---
    # A notice whose send failed for a passing reason (a timeout before the request left, a 5xx, WeChat busy) is
    # tried again after 2^attempt seconds, at most this often, then failed.
    notice_max_attempts: int = Field(default=6, ge=1)
    notice_max_backoff_seconds: float = Field(default=600.0, gt=0)
    # A sender claims a notice for this long; one still `sending` after it died mid-call and is marked `unknown`
    # (not sent again: a customer is never told twice).
    notice_lease_seconds: float = Field(default=60.0, gt=0)
    notice_batch_size: int = Field(default=50, ge=1)
    notice_concurrency: int = Field(default=16, ge=1)
    # SMS stand-ins per customer per day (Asia/Shanghai), whatever the merchant chose.
    sms_daily_cap: int = Field(default=5, ge=0)
    # Open one-time grants kept per customer and template: more are refused (a client can't mint a budget).
    max_open_grants: int = Field(default=50, ge=1)
    # Templates whose category allows long-term subscriptions (长期订阅): an `accept` of one keeps standing.
    long_term_templates: list[str] = []
    # A client's report of a grant and WeChat's push of the same popup are one grant when this close in time.
    grant_match_seconds: float = Field(default=600.0, ge=0)
    # WeChat's message push (subscribe_msg_* events): the token set in the mini-program's console (empty: the push
    # endpoint answers 404).
    wechat_push_token: str = ""
    # Safe mode (安全模式): the console's EncodingAESKey; set, only sealed pushes are taken.
    wechat_push_aes_key: str = ""
    # A push's timestamp may be this far from now.
    wechat_push_tolerance_seconds: float = Field(default=300.0, gt=0)
    # The page a notice opens in the mini-program when the merchant's template names none.
    default_page: str = "pages/track/index"

    # --- merchant webhooks ---
    webhook_schedule_seconds: list[float] = WEBHOOK_SCHEDULE_SECONDS
    webhook_timeout_seconds: float = Field(default=15.0, gt=0)
    # An endpoint failing without a success for this long is disabled (Svix: 5 days).
    webhook_disable_after_hours: float = Field(default=120.0, gt=0)
    # After a rotation the previous secret still signs for this long, so receivers can switch over.
    webhook_rotation_overlap_hours: float = Field(default=24.0, ge=0)
    webhook_lease_seconds: float = Field(default=60.0, gt=0)
    webhook_batch_size: int = Field(default=50, ge=1)
    webhook_concurrency: int = Field(default=16, ge=1)
    webhook_max_endpoints: int = Field(default=20, ge=1)
    # Endpoints may point at loopback, private or link-local addresses only when ops allow it (tests, on-premises
    # POS): otherwise a tenant could make the service call into the cluster.
    webhook_allow_private_targets: bool = False

    # --- live streams ---
    stream_page_size: int = Field(default=100, ge=1)
    # A stream with no news sends a keep-alive comment this often (and looks at its table again: NOTIFY wakes it
    # sooner); below the gateway's upstream read timeout (15 s).
    stream_ping_seconds: float = Field(default=10.0, gt=0)
    stream_retry_ms: int = Field(default=3000, ge=0)
    # Stream events older than this are deleted (a reconnecting browser resumes within minutes).
    stream_retention_hours: float = Field(default=72.0, gt=0)

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
