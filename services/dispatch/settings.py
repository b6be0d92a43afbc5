from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.events.topics import events_topic
from shared.settings import ServiceSettings

CARRIER_HOSTS = {
    "dada": "https://newopen.imdada.cn",
    "shansong": "https://open.ishansong.com",
    "sf": "https://openic.sf-express.com",
    "meituan": "https://peisongopen.meituan.com",
    "uu": "https://openapi.uupt.com",
    "uu_v3": "https://api-open.uupt.com/openapi/v3",
    "wechat_legacy": "https://api.weixin.qq.com",
    "wechat_intracity": "https://api.weixin.qq.com",
}


class DispatchSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCH_", extra="ignore")
    service_name: ClassVar[str] = "dispatch"

    consumes: list[str] = [events_topic("order"), events_topic("redemption")]

    # Carrier secrets are sealed with this key (32 bytes, url-safe base64). Required.
    vault_key: str = ""
    # Where each carrier's API lives; with `carrier_sandbox_url` set, every carrier is at <url>/<carrier> instead
    # (the carrier simulator).
    carrier_urls: dict[str, str] = CARRIER_HOSTS
    carrier_sandbox_url: str = ""
    carrier_timeout_seconds: float = 5.0
    # The mini-program's credentials, for WeChat's access token.
    wechat_appid: str = ""
    wechat_secret: str = ""

    # Carrier callbacks (a public endpoint): bodies above this are refused (413); a refused callback keeps only its
    # digest, size and this many leading bytes, for this many days; a report dated more than the skew ahead of now
    # is refused; a WeChat push older (or newer) than the push age is refused, and its nonce kept that long.
    callback_max_body_bytes: int = 64 * 1024
    refused_prefix_bytes: int = 2048
    refused_retention_days: float = 7.0
    # Settled callbacks (applied, duplicate, stale, failed) are kept this long for ops, then deleted.
    callback_retention_days: float = 30.0
    callback_clock_skew_seconds: float = 300.0
    push_max_age_seconds: float = 300.0
    callback_prune_minutes: float = 60.0
    # Kept callbacks are applied this many at a time (one transaction, each delivery's in order).
    callback_batch_size: int = 100

    # Escalation: each round with no rider raises the tip by this step up to the store's cap, then re-dispatches.
    tip_step_fen: int = 200
    # A delivery the carriers have been silent about this long is queried (reconciliation).
    silent_minutes: float = 10.0

    # Own fleet: an offer to a rider stands this long; a rider's position older than this does not count.
    rider_offer_seconds: int = 60
    rider_location_fresh_minutes: float = 10.0
    own_fleet_base_fen: int = 300
    own_fleet_per_km_fen: int = 100
    own_fleet_speed_mps: float = 4.0
    # An own rider's location reports become `delivery.location.v1` events (the live tracking) at most this often.
    location_event_seconds: float = 10.0
    # The redemption service, which verifies the customer's finish code when an own rider hands over (the same
    # default as the gateway's GATEWAY_REDEMPTION_URL).
    redemption_url: str = "http://127.0.0.1:8103"
    # Signs the short-lived voucher that tells the redemption service this rider is handing over this picked-up
    # delivery (PEM private key, Ed25519 or RSA; its public key goes to REDEMPTION_HANDOVER_PUBLIC_KEYS). Required.
    handover_signing_key: str = ""
    handover_voucher_seconds: float = 60.0

    def carrier_base_urls(self) -> dict[str, str]:
        if self.carrier_sandbox_url:
            return {name: f"{self.carrier_sandbox_url.rstrip('/')}/{name}" for name in CARRIER_HOSTS}
        return dict(self.carrier_urls)
