"""The own-rider handover voucher: dispatch vouches, for one short moment, that this rider is assigned this delivery
of this order and has picked it up; the redemption service redeems a finish code for a rider only with a voucher,
and only the finish code of the order it names.

A voucher is a JWT signed by dispatch's own key (`DISPATCH_HANDOVER_SIGNING_KEY`, Ed25519 or RSA) and verified with
its public key (`REDEMPTION_HANDOVER_PUBLIC_KEYS`, several concatenated during rotation), so the redemption service
can check vouchers but never make one. It travels in the `X-Songda-Handover` header next to the rider's own token.
Both sides read time from their own clock, so expiry is checked against it rather than the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from shared.auth import split_pem_keys
from shared.errors import Forbidden

HEADER = "X-Songda-Handover"
ISSUER = "songda-dispatch"
AUDIENCE = "songda-redemption:handover"
LEEWAY = timedelta(seconds=5)


@dataclass(frozen=True)
class Voucher:
    rider_id: str
    merchant_id: str
    delivery_id: str
    order_id: str


class VoucherSigner:
    def __init__(self, private_key_pem: str, ttl_seconds: float) -> None:
        if not private_key_pem:
            raise ValueError("no handover key: set DISPATCH_HANDOVER_SIGNING_KEY (PEM; see deploy/README.md)")
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
            raise ValueError("DISPATCH_HANDOVER_SIGNING_KEY must be an Ed25519 or RSA private key")
        self._key = key
        self._algorithm = "EdDSA" if isinstance(key, ed25519.Ed25519PrivateKey) else "RS256"
        self._ttl = timedelta(seconds=ttl_seconds)

    def sign(self, voucher: Voucher, now: datetime) -> str:
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": voucher.rider_id,
            "merchant_id": voucher.merchant_id,
            "delivery_id": voucher.delivery_id,
            "order_id": voucher.order_id,
            "iat": int(now.timestamp()),
            "exp": int((now + self._ttl).timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm=self._algorithm)


class VoucherVerifier:
    def __init__(self, public_keys_pem: str) -> None:
        if not public_keys_pem:
            raise ValueError("no handover keys: set REDEMPTION_HANDOVER_PUBLIC_KEYS (PEM; see deploy/README.md)")
        self._keys = split_pem_keys(public_keys_pem)

    def verify(self, token: str, now: datetime) -> Voucher:
        """The voucher, or Forbidden when it is forged, for someone else's service, or expired."""
        for key in self._keys:
            try:
                claims = jwt.decode(
                    token,
                    key=key,
                    algorithms=["EdDSA", "RS256"],
                    audience=AUDIENCE,
                    issuer=ISSUER,
                    options={"require": ["iss", "aud", "sub", "iat", "exp"], "verify_exp": False, "verify_iat": False},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as error:
                raise Forbidden(f"The handover voucher is not valid: {error}") from error
            stamp = now.timestamp()
            if not claims["iat"] - LEEWAY.total_seconds() <= stamp < claims["exp"] + LEEWAY.total_seconds():
                raise Forbidden("The handover voucher has expired: hand over again")
            try:
                return Voucher(
                    str(claims["sub"]), str(claims["merchant_id"]), str(claims["delivery_id"]), str(claims["order_id"])
                )
            except KeyError as error:
                raise Forbidden(f"The handover voucher lacks {error}") from error
        raise Forbidden("The handover voucher's signature is not valid")
