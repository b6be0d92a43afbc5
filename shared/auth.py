"""JWT verification producing a `Principal`.

Algorithms are fixed (RS256, EdDSA) and keys are key objects, never strings, so neither `alg: none` nor an HS256
token signed with the public key as an HMAC secret can pass. `exp iat sub iss aud` are required. A key that carries a
`kid` (from a JWKS, or the gateway's own) verifies only tokens naming that `kid`; keys from a PEM bundle carry none.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import httpx
import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi import Depends, Request
from pydantic import BaseModel, Field

from shared.errors import Forbidden, Unauthorized

ALGORITHMS = ("RS256", "EdDSA")
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud"]
_PEM_END = "-----END PUBLIC KEY-----"


class Role(StrEnum):
    customer = "customer"
    merchant = "merchant"
    rider = "rider"
    ops = "ops"
    service = "service"


class Principal(BaseModel):
    sub: str
    role: Role
    merchant_id: str | None = None
    store_ids: list[str] = Field(default_factory=list)
    # A principal limited to reading one order (a tracking link's): every service shows it that order only, with the
    # customer's address, contact and note hidden, and `CurrentPrincipal` refuses it any method but GET and HEAD.
    order_id: str | None = None

    def claims(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True)
class VerificationKey:
    key: Any
    kid: str | None = None  # None: the key has no id, so it is tried whatever `kid` a token names

    def admits(self, kid: str | None) -> bool:
        return self.kid is None or self.kid == kid


def split_pem_keys(pem_bundle: str) -> list[Any]:
    """Loads every public key of a PEM bundle (keys are concatenated during rotation)."""
    keys = []
    for part in pem_bundle.split(_PEM_END):
        if "-----BEGIN PUBLIC KEY-----" in part:
            keys.append(load_pem_public_key((part.strip() + "\n" + _PEM_END + "\n").encode()))
    return keys


def jwks_keys(document: dict[str, Any]) -> list[VerificationKey]:
    return [VerificationKey(k.key, k.key_id or None) for k in jwt.PyJWKSet.from_dict(document).keys]


def load_public_keys(text: str) -> list[VerificationKey]:
    """A PEM bundle (keys without ids) or a JWKS document (JSON `{"keys": [...]}`, each key bound to its `kid`)."""
    if text.lstrip().startswith("{"):
        return jwks_keys(json.loads(text))
    return [VerificationKey(key) for key in split_pem_keys(text)]


class TokenVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        public_keys_pem: str = "",
        public_keys: Sequence[VerificationKey] = (),
        jwks_url: str = "",
        jwks_ttl_seconds: float = 300.0,
        leeway_seconds: float = 30.0,
        cache_size: int = 4096,
        cache_seconds: float = 60.0,
    ) -> None:
        if not public_keys_pem and not public_keys and not jwks_url:
            raise ValueError("no JWT verification keys: set <SERVICE>_JWT_PUBLIC_KEYS (PEM) or <SERVICE>_JWT_JWKS_URL")
        self.issuer = issuer
        self.audience = audience
        self.static_keys = [*public_keys, *(load_public_keys(public_keys_pem) if public_keys_pem else [])]
        self.jwks_url = jwks_url
        self.jwks_ttl = jwks_ttl_seconds
        self.leeway = leeway_seconds
        self._jwks: list[VerificationKey] = []
        self._jwks_fetched_at = 0.0
        self._jwks_lock = asyncio.Lock()
        # Tokens already verified, until their `exp` and for at most `cache_seconds` (so a key dropped from the JWKS
        # stops admitting them soon): signature checks are most of a request's cost at the gateway.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self.cache_size = cache_size
        self.cache_seconds = cache_seconds

    async def _jwks_keys(self, kid: str | None) -> list[VerificationKey]:
        async with self._jwks_lock:
            stale = time.monotonic() - self._jwks_fetched_at > self.jwks_ttl
            # An unknown kid refreshes the set (key rotation), at most every 10 s.
            unknown = not any(key.admits(kid) for key in self._jwks)
            if stale or (unknown and time.monotonic() - self._jwks_fetched_at > 10):
                async with httpx.AsyncClient(timeout=5) as client:
                    response = await client.get(self.jwks_url)
                    response.raise_for_status()
                self._jwks = jwks_keys(response.json())
                self._jwks_fetched_at = time.monotonic()
        return list(self._jwks)

    async def verify_until(self, token: str) -> tuple[Principal, float]:
        """The principal and when its token expires (epoch seconds), checked afresh (not from the cache)."""
        return await self._verify(token)

    async def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() < cached[1]:
                self._verified.move_to_end(token)
                return cached[0]
            del self._verified[token]
        principal, expires_at = await self._verify(token)
        self._verified[token] = (principal, min(expires_at, time.time() + self.cache_seconds))
        if len(self._verified) > self.cache_size:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("Malformed token") from exc
        if header.get("alg") not in ALGORITHMS:
            raise Unauthorized("Token algorithm not accepted")
        kid = header.get("kid")
        keys = list(self.static_keys)
        if self.jwks_url:
            try:
                keys += await self._jwks_keys(kid)
            except (httpx.HTTPError, jwt.PyJWTError, ValueError) as exc:
                if not keys:
                    raise Unauthorized("Signing keys unavailable") from exc
        candidates = [key.key for key in keys if key.admits(kid)]
        if not candidates:
            raise Unauthorized("Token signing key not known")
        last_error: Exception | None = None
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key=key,
                    algorithms=list(ALGORITHMS),
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options={"require": REQUIRED_CLAIMS},
                )
            except jwt.InvalidSignatureError as exc:
                last_error = exc
                continue
            except jwt.ExpiredSignatureError as exc:
                raise Unauthorized("Token expired") from exc
            except jwt.PyJWTError as exc:
                raise Unauthorized(f"Invalid token: {exc}") from exc
            try:
                principal = Principal.model_validate(
                    {
                        "sub": claims["sub"],
                        "role": claims.get("role"),
                        "merchant_id": claims.get("merchant_id"),
                        "store_ids": claims.get("store_ids") or [],
                        "order_id": claims.get("order_id"),
                    }
                )
                return principal, float(claims["exp"])
            except ValueError as exc:
                raise Unauthorized("Token claims are not valid") from exc
        raise Unauthorized("Token signature not valid") from last_error


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("A bearer token is required")
    return token.strip()


READ_METHODS = frozenset({"GET", "HEAD"})


async def _current_principal(request: Request) -> Principal:
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = await verifier.verify(bearer_token(request))
    if principal.order_id is not None and request.method not in READ_METHODS:
        raise Forbidden("A tracking link's token only reads its order")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(_current_principal)]


def require_roles(*roles: Role) -> Any:
    """A dependency that admits only the given roles (403 for the others)."""

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"Role {principal.role} may not do this")
        return principal

    return Depends(dependency)
