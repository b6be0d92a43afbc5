"""Tokens of a merchant's own OpenID Connect provider, exchanged for Songda tokens.

The provider's token is verified against its JWKS (fetched and cached; an unknown `kid` refreshes it), its issuer
and audience; its claims are mapped by the configured names to a merchant, stores and a role. Only the merchants
the provider is configured for, and only staff roles, are accepted: a provider cannot mint ops or another
merchant's staff. The Songda token it gets lives no longer than the provider's, and services verify it like any.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt

from gateway.settings import GatewaySettings
from shared.auth import Principal, Role, VerificationKey, jwks_keys
from shared.errors import Forbidden, Unauthorized

ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
JWKS_TTL_SECONDS = 300.0
# An unknown kid refreshes the key set (the provider rotated), but not more often than this.
JWKS_REFRESH_SECONDS = 10.0


class OidcProvider:
    def __init__(self, settings: GatewaySettings) -> None:
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.jwks_url = settings.oidc_jwks_url
        self.merchant_claim = settings.oidc_merchant_claim
        self.stores_claim = settings.oidc_stores_claim
        self.role_claim = settings.oidc_role_claim
        self.merchant_ids = frozenset(settings.oidc_merchant_ids)
        self.roles = frozenset(Role(role) for role in settings.oidc_roles)
        self._keys: list[VerificationKey] = []
        self._fetched_at = -JWKS_TTL_SECONDS
        self._lock = asyncio.Lock()

    async def _keys_for(self, kid: str | None) -> list[Any]:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            unknown = not any(key.admits(kid) for key in self._keys)
            if age > JWKS_TTL_SECONDS or (unknown and age > JWKS_REFRESH_SECONDS):
                try:
                    async with httpx.AsyncClient(timeout=5) as client:
                        response = await client.get(self.jwks_url)
                        response.raise_for_status()
                    self._keys = jwks_keys(response.json())
                    self._fetched_at = time.monotonic()
                except (httpx.HTTPError, jwt.PyJWTError, ValueError) as exc:
                    if not self._keys:
                        raise Unauthorized("The identity provider's keys are unavailable") from exc
        return [key.key for key in self._keys if key.admits(kid)]

    async def verify(self, token: str) -> tuple[Principal, float]:
        """The principal the provider's token maps to, and when the token expires (epoch seconds)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("Malformed token") from exc
        if header.get("alg") not in ALGORITHMS:
            raise Unauthorized("Token algorithm not accepted")
        keys = await self._keys_for(header.get("kid"))
        if not keys:
            raise Unauthorized("Token signing key not known")
        claims: dict[str, Any] | None = None
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key=key,
                    algorithms=list(ALGORITHMS),
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=30,
                    options={"require": ["exp", "sub", "iss", "aud"]},
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError as exc:
                raise Unauthorized("Token expired") from exc
            except jwt.PyJWTError as exc:
                raise Unauthorized(f"Invalid token: {exc}") from exc
        if claims is None:
            raise Unauthorized("Token signature not valid")
        return self._principal(claims), float(claims["exp"])

    def _principal(self, claims: dict[str, Any]) -> Principal:
        role = claims.get(self.role_claim)
        if role not in self.roles:
            raise Forbidden(f"The provider's {self.role_claim!r} claim names no role it may grant")
        merchant_id = claims.get(self.merchant_claim)
        if merchant_id not in self.merchant_ids:
            raise Forbidden(f"The provider's {self.merchant_claim!r} claim names no merchant it speaks for")
        stores = claims.get(self.stores_claim) or []
        if isinstance(stores, str):
            stores = [stores]
        if not isinstance(stores, list) or not all(isinstance(store, str) and store for store in stores):
            raise Unauthorized(f"The provider's {self.stores_claim!r} claim is not a list of store ids")
        return Principal(sub=f"oidc:{claims['sub']}", role=Role(role), merchant_id=merchant_id, store_ids=stores)
