"""Tokens for the demo's people (a customer, the demo merchant's staff, its rider, an ops user), signed with the
local stack's gateway key so the running gateway and services accept them."""

from __future__ import annotations

from pathlib import Path

from deploy.local.keys import signing_key_file
from deploy.local.seed import DEMO_MERCHANT_ID, DEMO_STORE_ID
from gateway.auth import TokenIssuer, load_signing_key
from gateway.settings import GatewaySettings
from shared.auth import Principal, Role
from shared.clock import SystemClock


def demo_tokens(state_dir: Path, ttl_seconds: int = 12 * 3600) -> dict[str, str]:
    settings = GatewaySettings(signing_key_file=str(signing_key_file(state_dir)))
    issuer = TokenIssuer(
        load_signing_key(settings),
        key_id=settings.signing_key_id,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=ttl_seconds,
        clock=SystemClock(),
    )
    principals = {
        "customer": Principal(sub="demo-customer", role=Role.customer),
        "merchant": Principal(
            sub="demo-merchant-staff", role=Role.merchant, merchant_id=DEMO_MERCHANT_ID, store_ids=[DEMO_STORE_ID]
        ),
        "rider": Principal(sub="demo-rider", role=Role.rider, merchant_id=DEMO_MERCHANT_ID),
        "ops": Principal(sub="demo-ops", role=Role.ops),
    }
    return {name: issuer.issue(principal) for name, principal in principals.items()}
