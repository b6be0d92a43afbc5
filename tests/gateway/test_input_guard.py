"""The gateway refuses text no field can hold before routing it: its own routes and what it proxies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from tests.gateway.test_gateway import _bearer, _claims, _settings, _sign, fake_upstream
from tests.support import serve


@pytest.fixture
async def gateway() -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve(fake_upstream()) as upstream,
        serve(create_app(_settings(upstream))) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        yield client


@pytest.mark.parametrize("path", ["/v1/orders/echo%00", "/v1/orders/%FFecho", "/v1/orders/ec%0Dho"])
async def test_control_characters_and_non_utf8_in_a_proxied_path_are_a_400(
    gateway: httpx.AsyncClient, path: str
) -> None:
    response = await gateway.get(path, headers=_bearer(_sign(_claims())))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/invalid-characters"


async def test_a_login_code_with_a_nul_is_a_400_not_a_customer(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post("/v1/auth/wechat/login", json={"code": "0a1b\u0000"})
    assert response.status_code == 400, response.text


async def test_clean_bodies_reach_the_upstream_byte_for_byte(gateway: httpx.AsyncClient) -> None:
    body = b'{"note": "\\u7c73\\u7ebf\\n", "n": 1}'
    response = await gateway.post(
        "/v1/orders/echo", content=body, headers=_bearer(_sign(_claims())) | {"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["body_bytes"] == len(body)
