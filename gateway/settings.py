from __future__ import annotations

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.events.topics import SERVICES


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    order_url: str = "http://127.0.0.1:8101"
    dispatch_url: str = "http://127.0.0.1:8102"
    redemption_url: str = "http://127.0.0.1:8103"
    aftersales_url: str = "http://127.0.0.1:8104"
    notify_url: str = "http://127.0.0.1:8105"
    upstream_timeout_seconds: float = 15.0
    upstream_connect_timeout_seconds: float = 2.0
    upstream_pool_size: int = 200

    # Ed25519 (EdDSA) or RSA (RS256) private key in PEM, inline or from a file; its public half is served as JWKS.
    signing_key: str = ""
    signing_key_file: str = ""
    signing_key_id: str = "songda-1"
    # Public keys of retired signing keys, still accepted until their tokens expire (PEM bundle).
    previous_public_keys: str = ""
    jwt_issuer: str = "songda"
    jwt_audience: str = "songda"
    token_ttl_seconds: int = 2 * 3600

    # Dev mode adds POST /v1/auth/dev-token, which mints any token: never turn it on in production.
    dev_mode: bool = False

    rate_limit_principal_per_second: float = 20.0
    rate_limit_principal_burst: int = 40
    rate_limit_ip_per_second: float = 50.0
    rate_limit_ip_burst: int = 100
    max_body_bytes: int = 1024 * 1024

    cors_origins: list[str] = ["http://localhost:5173", "http://127.0.0.1:5173"]

    wechat_mode: Literal["sandbox", "wechat"] = "sandbox"
    wechat_appid: str = "wx-sandbox-app"
    wechat_secret: str = ""
    wechat_api_base: str = "https://api.weixin.qq.com"

    log_level: str = "INFO"

    def upstreams(self) -> dict[str, str]:
        return {service: getattr(self, f"{service}_url").rstrip("/") for service in SERVICES}
