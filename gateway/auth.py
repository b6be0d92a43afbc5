"""Token issuing (WeChat login, dev tokens) and the JWKS endpoint.

The gateway signs with one private key (EdDSA or RS256) and publishes the public half as JWKS; services verify
with that set or with the PEM given in their settings. Verification uses `shared.auth.TokenVerifier`.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from gateway.settings import GatewaySettings
from gateway.wechat import Code2Session
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.keys import SigningKey


def load_signing_key(settings: GatewaySettings) -> SigningKey:
    pem = settings.signing_key or (Path(settings.signing_key_file).read_text() if settings.signing_key_file else "")
    if not pem:
        raise ValueError("the gateway needs GATEWAY_SIGNING_KEY or GATEWAY_SIGNING_KEY_FILE (a PEM private key)")
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise ValueError("the signing key must be Ed25519 or RSA")
    return key


class TokenIssuer:
    def __init__(
        self, key: SigningKey, *, key_id: str, issuer: str, audience: str, ttl_seconds: int, clock: Clock
    ) -> None:
        self.key = key
        self.key_id = key_id
        self.algorithm = "EdDSA" if isinstance(key, ed25519.Ed25519PrivateKey) else "RS256"
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self.clock = clock

    def issue(self, principal: Principal, ttl_seconds: int | None = None) -> str:
        now = self.clock.now()
        claims: dict[str, Any] = {
            **principal.claims(),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(seconds=ttl_seconds or self.ttl_seconds),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.key, algorithm=self.algorithm, headers={"kid": self.key_id})

    def jwks(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.key_id, "use": "sig", "alg": self.algorithm})
        return {"keys": [jwk]}


class WeChatLogin(BaseModel):
    code: str = Field(min_length=1, max_length=128, description="The code from the mini-program's wx.login()")


class DevTokenRequest(BaseModel):
    role: Role
    sub: str = Field(min_length=1, max_length=128)
    merchant_id: str | None = None
    store_ids: list[str] = Field(default_factory=list)
    ttl_seconds: int | None = Field(default=None, ge=60, le=7 * 24 * 3600)


class TokenRead(BaseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    role: Role
    sub: str


def auth_router(settings: GatewaySettings) -> APIRouter:
    router = APIRouter(tags=["auth"])

    @router.post("/v1/auth/wechat/login", summary="Exchange a mini-program login code for a customer token")
    async def wechat_login(body: WeChatLogin, request: Request) -> TokenRead:
        code2session: Code2Session = request.app.state.code2session
        issuer: TokenIssuer = request.app.state.token_issuer
        session = await code2session.exchange(body.code)
        principal = Principal(sub=session.openid, role=Role.customer)
        return TokenRead(
            access_token=issuer.issue(principal),
            expires_in=issuer.ttl_seconds,
            role=principal.role,
            sub=principal.sub,
        )

    if settings.dev_mode:

        @router.post("/v1/auth/dev-token", summary="Mint any token (dev mode only)")
        async def dev_token(body: DevTokenRequest, request: Request) -> TokenRead:
            issuer: TokenIssuer = request.app.state.token_issuer
            principal = Principal(sub=body.sub, role=body.role, merchant_id=body.merchant_id, store_ids=body.store_ids)
            return TokenRead(
                access_token=issuer.issue(principal, body.ttl_seconds),
                expires_in=body.ttl_seconds or issuer.ttl_seconds,
                role=principal.role,
                sub=principal.sub,
            )

    @router.get("/.well-known/jwks.json", summary="Public keys that verify Songda tokens")
    async def jwks(request: Request) -> dict[str, Any]:
        issuer: TokenIssuer = request.app.state.token_issuer
        return issuer.jwks()

    return router
