from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.events.topics import SERVICES
from shared.settings import PrefixedSettings


class GatewaySettings(PrefixedSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    order_url: str = "http://127.0.0.1:8101"
    dispatch_url: str = "http://127.0.0.1:8102"
    redemption_url: str = "http://127.0.0.1:8103"
    aftersales_url: str = "http://127.0.0.1:8104"
    notify_url: str = "http://127.0.0.1:8105"
    upstream_timeout_seconds: float = 15.0
    upstream_connect_timeout_seconds: float = 2.0
    upstream_pool_size: int = 200
    # Idle upstream connections are closed after this, before the services' own keep-alive timeout (uvicorn: 5 s)
    # can close one just as the gateway reuses it.
    upstream_keepalive_seconds: float = 4.0
    # Upstream answers of known length up to this are read whole and sent as one message; longer ones are streamed.
    upstream_buffer_bytes: int = 256 * 1024

    # Ed25519 (EdDSA) or RSA (RS256) private key in PEM, inline or from a file; its public half is served as JWKS.
    signing_key: str = ""
    signing_key_file: str = ""
    signing_key_id: str = "songda-1"
    # Public keys of retired signing keys, still accepted until their tokens expire (PEM bundle).
    previous_public_keys: str = ""
    jwt_issuer: str = "songda"
    jwt_audience: str = "songda"
    token_ttl_seconds: int = 2 * 3600

    # Tracking links (`POST /v1/auth/tracking-links`): a link reads one order until it expires; its page trades it
    # for short access tokens. The link's address starts with `public_url` (empty: the address the minting request
    # was sent to).
    public_url: str = ""
    tracking_link_ttl_seconds: int = Field(default=72 * 3600, ge=60)
    tracking_access_token_ttl_seconds: int = Field(default=15 * 60, ge=60)

    # Dev mode adds POST /v1/auth/dev-token, which mints any token: never turn it on in production.
    dev_mode: bool = False

    rate_limit_principal_per_second: float = 20.0
    rate_limit_principal_burst: int = 40
    rate_limit_ip_per_second: float = 50.0
    rate_limit_ip_burst: int = 100
    # Carriers' callbacks and payment notifications, per callback path (one carrier or provider), whatever the address.
    rate_limit_callback_per_second: float = 2000.0
    rate_limit_callback_burst: int = 4000
    max_body_bytes: int = 1024 * 1024

    # Load balancers or proxies in front of the gateway (CIDRs) whose `X-Forwarded-For` entries are believed. Empty:
    # the TCP peer is the client. The gateway forwards the address it decided, and nothing the client sent.
    trusted_proxies: list[str] = []

    # Browser origins of the console (JSON list); none by default.
    cors_origins: list[str] = []

    # `wechat` calls the real jscode2session (appid and secret required). `sandbox` issues a customer token for any
    # code, so it is refused unless dev mode is on.
    wechat_mode: Literal["sandbox", "wechat"] = "wechat"
    wechat_appid: str = ""
    wechat_secret: str = ""
    wechat_api_base: str = "https://api.weixin.qq.com"

    # The gateway's own database: staff accounts, invitations, refresh tokens, sign-in throttling
    # (gateway/identity). Empty: no password sign-in, only WeChat logins and OIDC exchanges (and dev tokens).
    database_url: str = ""
    database_pool_size: int = 5
    # Staff sign-in: a short-lived access token and a rotating refresh token (stored as its hash only).
    staff_access_token_ttl_seconds: int = 15 * 60
    staff_refresh_token_ttl_seconds: int = 30 * 24 * 3600
    staff_invitation_ttl_seconds: int = 72 * 3600
    # Failed sign-ins tolerated per login and per client address within the window; more are refused (429) until
    # the window ends.
    sign_in_failures_per_account: int = 5
    sign_in_failures_per_address: int = 30
    sign_in_window_seconds: int = 15 * 60

    # An external OpenID Connect provider (a merchant's own): its tokens are exchanged at /v1/auth/oidc/exchange for
    # Songda tokens, their claims mapped by these names. Empty issuer: no provider.
    oidc_issuer: str = ""
    oidc_jwks_url: str = ""
    oidc_audience: str = ""
    oidc_merchant_claim: str = "merchant_id"
    oidc_stores_claim: str = "store_ids"
    oidc_role_claim: str = "role"
    # The merchants the provider may speak for (JSON list): a token naming another is refused.
    oidc_merchant_ids: list[str] = []
    # The roles its tokens may carry (staff of the merchant, never ops).
    oidc_roles: list[Literal["merchant", "rider"]] = ["merchant", "rider"]

    log_level: str = "INFO"
    # A line per request from uvicorn. Off by default: each proxied request is logged by the service that answers it
    # (with the same correlation id) and counted in the gateway's request metrics by route and status; the line
    # costs the gateway about a tenth of its CPU per request.
    access_log: bool = False

    @model_validator(mode="after")
    def _sandboxes_only_in_dev_mode(self) -> GatewaySettings:
        if self.wechat_mode == "sandbox" and not self.dev_mode:
            raise ValueError("GATEWAY_WECHAT_MODE=sandbox mints customers for any code: it needs GATEWAY_DEV_MODE=true")
        return self

    @model_validator(mode="after")
    def _oidc_complete(self) -> GatewaySettings:
        if self.oidc_issuer and not (self.oidc_jwks_url and self.oidc_audience and self.oidc_merchant_ids):
            raise ValueError(
                "GATEWAY_OIDC_ISSUER needs GATEWAY_OIDC_JWKS_URL, GATEWAY_OIDC_AUDIENCE and GATEWAY_OIDC_MERCHANT_IDS"
            )
        return self

    def upstreams(self) -> dict[str, str]:
        return {service: getattr(self, f"{service}_url").rstrip("/") for service in SERVICES}
