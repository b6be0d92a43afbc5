"""Services verify tokens themselves too (defence in depth behind the gateway), with keys from their settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter

from services.order.settings import OrderSettings
from shared.auth import Principal, Role, require_roles
from shared.keys import generate_signing_key, public_pem
from shared.service import build_service_app

KEY = serialization.load_pem_private_key(generate_signing_key().encode(), password=None)


def _token(role: str) -> dict[str, str]:
    now = datetime.now(UTC)
    claims = {"sub": "u-1", "role": role, "merchant_id": "m-1", "store_ids": ["s-1"], "iss": "songda",
              "aud": "songda", "iat": now, "exp": now + timedelta(minutes=5)}  # fmt: skip
    return {"Authorization": "Bearer " + jwt.encode(claims, KEY, algorithm="EdDSA")}  # type: ignore[arg-type]


async def test_a_service_route_admits_only_its_roles() -> None:
    router = APIRouter()

    @router.get("/v1/stores/mine")
    async def my_stores(principal: Annotated[Principal, require_roles(Role.merchant, Role.ops)]) -> dict[str, object]:
        return {"merchant_id": principal.merchant_id, "store_ids": principal.store_ids}

    settings = OrderSettings(jwt_public_keys=public_pem(KEY), run_workers=False)  # type: ignore[arg-type]
    app = build_service_app(settings, title="t", description="t", routers=[router])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://order") as client:
        assert (await client.get("/v1/stores/mine")).status_code == 401
        assert (await client.get("/v1/stores/mine", headers=_token("customer"))).status_code == 403
        allowed = await client.get("/v1/stores/mine", headers=_token("merchant"))
        assert allowed.status_code == 200
        assert allowed.json() == {"merchant_id": "m-1", "store_ids": ["s-1"]}
