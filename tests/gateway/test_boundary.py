"""The gateway as a boundary of its own: the path the role check saw is the path the upstream gets, tokens name their
key, and nothing that mints customers for free is on unless dev mode says so."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from gateway.app import create_app
from gateway.settings import GatewaySettings
from gateway.wechat import WeChatCode2Session
from shared.auth import TokenVerifier
from shared.errors import Unauthorized
from shared.keys import generate_signing_key
from tests.gateway.test_gateway import SIGNING_KEY, _bearer, _claims, _settings, _sign, fake_upstream
from tests.support import serve

RIDER = _claims(role="rider", sub="r-1", merchant_id="m-1")


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[str]:
    async with serve(fake_upstream()) as url:
        yield url


@pytest.fixture
async def gateway(upstream: str) -> AsyncIterator[str]:
    async with serve(create_app(_settings(upstream))) as url:
        yield url


async def _raw_status(base_url: str, target: str, token: str) -> int:
    """Sends the request line exactly as written (HTTP clients would normalise `..` away before sending)."""
    url = httpx.URL(base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    request = f"GET {target} HTTP/1.1\r\nHost: {url.host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    writer.write(request.encode("latin-1"))
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


@pytest.mark.parametrize(
    "target",
    [
        "/v1/deliveries/..%2F..%2Fv1%2Fcarriers%2Fcallbacks",
        "/v1/deliveries/%2e%2e/%2e%2e/v1/carriers/callbacks",
        "/v1/deliveries/../../v1/carriers/callbacks",
        "/v1/deliveries/./x",
        "/v1/deliveries//x",
        "/v1/deliveries/x%5C..%5Cy",
        "/v1/deliveries/x\\y",
        "/v1/deliveries/x%00",
        "/v1/deliveries/x%0d%0aSet-Cookie:a",
        "/v1/deliveries/x%25y",
        "/v1/deliveries/x%ff",
        "/v1/deliveries/x%ed%a0%80",
    ],
)
async def test_a_path_that_could_mean_another_route_is_refused(gateway: str, target: str) -> None:
    assert await _raw_status(gateway, target, _sign(RIDER)) == 400


async def test_the_upstream_gets_the_path_the_route_was_matched_on(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        response = await client.get("/v1/orders/%65cho?x=%2F", headers=_bearer(_sign(_claims())))
    assert response.status_code == 200
    assert response.json()["raw_path"] == "/v1/orders/%65cho"
    assert response.json()["query"] == "x=%2F"


async def test_options_is_no_way_around_the_token(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        bare = await client.options("/v1/orders/echo")
        preflight = await client.options(
            "/v1/orders/echo", headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "GET"}
        )
    assert bare.status_code == 401
    assert preflight.status_code == 200


async def test_a_token_naming_another_key_is_refused_even_if_the_signature_verifies(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as client:
        named = await client.get("/v1/orders/echo", headers=_bearer(_sign(_claims(), kid="songda-1")))
        unknown = await client.get("/v1/orders/echo", headers=_bearer(_sign(_claims(), kid="retired-or-made-up")))
        unnamed = await client.get("/v1/orders/echo", headers=_bearer(_sign(_claims(), kid=None)))
    assert named.status_code == 200
    assert (unknown.status_code, unnamed.status_code) == (401, 401)


async def test_retired_keys_still_verify_during_rotation(upstream: str) -> None:
    retired = generate_signing_key()
    retired_public = (
        serialization.load_pem_private_key(retired.encode(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = _settings(upstream, previous_public_keys=retired_public)
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        old = await client.get("/v1/orders/echo", headers=_bearer(_sign(_claims(), key=retired, kid="songda-0")))
    assert old.status_code == 200


async def test_a_services_jwks_binds_each_key_to_its_kid() -> None:
    private = serialization.load_pem_private_key(SIGNING_KEY.encode(), password=None)
    jwk = json.loads(jwt.get_algorithm_by_name("EdDSA").to_jwk(private.public_key()))  # type: ignore[arg-type]
    document = json.dumps({"keys": [{**jwk, "kid": "songda-1", "alg": "EdDSA", "use": "sig"}]})
    verifier = TokenVerifier(issuer="songda", audience="songda", public_keys_pem=document)
    assert (await verifier.verify(_sign(_claims(), kid="songda-1"))).sub == "c-1"
    for kid in ("made-up", None):
        with pytest.raises(Unauthorized):
            await verifier.verify(_sign(_claims(), kid=kid))


async def test_the_wechat_sandbox_needs_dev_mode() -> None:
    with pytest.raises(ValidationError, match="DEV_MODE"):
        GatewaySettings(signing_key=SIGNING_KEY, wechat_mode="sandbox", dev_mode=False)
    # A deployment that sets nothing logs in through WeChat itself, and cannot start without its credentials.
    settings = GatewaySettings(signing_key=SIGNING_KEY)
    assert (settings.wechat_mode, settings.dev_mode, settings.cors_origins) == ("wechat", False, [])
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match="GATEWAY_WECHAT_SECRET"):
            WeChatCode2Session(client, api_base=settings.wechat_api_base, appid=settings.wechat_appid, secret="")
