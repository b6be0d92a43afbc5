"""Whose address a request comes from: the gateway believes `X-Forwarded-For` only from its trusted proxies and
forwards only the address it decided; a service believes only its trusted gateways. Peers are told apart by their
loopback source address (127.0.0.2 is a client, 127.0.0.3 a load balancer in front of the gateway)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from deploy.local.ports import free_port
from deploy.local.processes import AppProcess
from gateway.app import create_app
from services.redemption.app import create_app as create_redemption
from shared.events.topics import SERVICES
from shared.middleware import client_address, networks
from tests.gateway.test_gateway import SIGNING_KEY, _bearer, _claims, _settings, _sign, fake_upstream
from tests.redemption.conftest import redemption_settings
from tests.support import JWT_KEY, serve

CLIENT, BALANCER = "127.0.0.2", "127.0.0.3"
LOGIN = "/v1/auth/wechat/login"  # public, so only the address limits it


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[str]:
    async with serve(fake_upstream()) as url:
        yield url


def _from(source: str, base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, transport=httpx.AsyncHTTPTransport(local_address=source))


async def test_rotating_x_forwarded_for_does_not_escape_the_ip_rate_limit(upstream: str, tmp_path: Path) -> None:
    """The gateway as the launcher runs it (uvicorn's command line): uvicorn itself believes X-Forwarded-For from
    127.0.0.1 unless told not to, which is where a rotated header used to win a fresh bucket each time."""
    env = {
        "GATEWAY_SIGNING_KEY": SIGNING_KEY,
        "GATEWAY_DEV_MODE": "true",
        "GATEWAY_WECHAT_MODE": "sandbox",
        "GATEWAY_RATE_LIMIT_IP_PER_SECOND": "0.5",
        "GATEWAY_RATE_LIMIT_IP_BURST": "3",
        **{f"GATEWAY_{service.upper()}_URL": upstream for service in SERVICES},
    }
    process = AppProcess("gateway", "gateway.app:create_app", free_port(), env, tmp_path / "gateway.log")
    process.start()
    try:
        await asyncio.to_thread(process.wait_ready, time.monotonic() + 30, "/healthz")
        async with httpx.AsyncClient(base_url=process.url) as client:
            statuses = [
                (
                    await client.post(LOGIN, json={"code": "c"}, headers={"X-Forwarded-For": f"198.51.100.{i}"})
                ).status_code
                for i in range(6)
            ]
    finally:
        await asyncio.to_thread(process.stop)
    assert statuses == [200, 200, 200, 429, 429, 429]


async def test_the_client_cannot_choose_the_address_the_upstream_is_told(upstream: str) -> None:
    spoofed = {"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6", "Forwarded": "for=6.6.6.6", "True-Client-IP": "x"}
    async with serve(create_app(_settings(upstream))) as url, _from(CLIENT, url) as client:
        seen = (await client.get("/v1/orders/echo", headers={**_bearer(_sign(_claims())), **spoofed})).json()
    headers = seen["headers"]
    assert (headers["x-forwarded-for"], headers["x-real-ip"]) == (CLIENT, CLIENT)
    assert headers["forwarded"] == f"for={CLIENT};proto=http"
    assert "true-client-ip" not in headers


async def test_behind_a_trusted_proxy_the_client_is_the_hop_it_saw(upstream: str) -> None:
    settings = _settings(
        upstream, trusted_proxies=[f"{BALANCER}/32"], rate_limit_ip_per_second=0.5, rate_limit_ip_burst=2
    )
    token = _bearer(_sign(_claims()))
    async with serve(create_app(settings)) as url, _from(BALANCER, url) as balancer, _from(CLIENT, url) as client:
        # The balancer appends the address it saw to whatever the client wrote.
        behind = await balancer.get("/v1/orders/echo", headers={**token, "X-Forwarded-For": "6.6.6.6, 203.0.113.9"})
        assert behind.json()["headers"]["x-forwarded-for"] == "203.0.113.9"
        # Each client behind the balancer has its own bucket ...
        other = [
            (await balancer.post(LOGIN, json={"code": "c"}, headers={"X-Forwarded-For": "203.0.113.10"})).status_code
            for _ in range(3)
        ]
        assert other == [200, 200, 429]
        # ... and a client that is not the balancer is not believed.
        direct = await client.get("/v1/orders/echo", headers={**token, "X-Forwarded-For": "203.0.113.9"})
        assert direct.json()["headers"]["x-forwarded-for"] == CLIENT


def test_the_client_address_is_read_from_the_right() -> None:
    trusted = networks(["10.0.0.0/8", "192.0.2.1"])
    assert client_address("10.0.0.5", "6.6.6.6, 198.51.100.7, 10.1.1.1", trusted) == "198.51.100.7"
    assert client_address("198.51.100.7", "6.6.6.6", trusted) == "198.51.100.7"
    assert client_address("192.0.2.1", "not-an-address", trusted) == "192.0.2.1"
    assert client_address("10.0.0.5", "", trusted) == "10.0.0.5"
    assert client_address("10.0.0.5", "10.0.0.6, 10.0.0.7", trusted) == "10.0.0.6"
    assert client_address("10.0.0.5", "[2001:db8::1]", trusted) == "2001:db8::1"
    assert client_address("10.0.0.5", "6.6.6.6", ()) == "10.0.0.5"


def _gateway_token(**claims: Any) -> dict[str, str]:
    """A token the gateway (signing with the test key, kid songda-1) and the service (its public key) both accept."""
    return {
        "Authorization": "Bearer "
        + jwt.encode(_claims(**claims), JWT_KEY, algorithm="EdDSA", headers={"kid": "songda-1"})
    }  # type: ignore[arg-type]


@pytest.fixture
async def redemption(redemption_db_url: str, bootstrap: str) -> AsyncIterator[str]:
    settings = redemption_settings(
        redemption_db_url,
        bootstrap,
        trusted_gateways=["127.0.0.1/32"],  # the gateway's httpx pool connects from 127.0.0.1
    )
    async with serve(create_redemption(settings)) as url:
        yield url


async def test_the_audit_log_records_the_address_the_gateway_decided(upstream: str, redemption: str) -> None:
    signing_key = JWT_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    settings = _settings(upstream, redemption_url=redemption, signing_key=signing_key, trusted_proxies=[BALANCER])
    staff = _gateway_token(role="merchant", sub="staff-1", merchant_id="m-1")
    async with serve(create_app(settings)) as url:
        attempts = [
            (CLIENT, "6.6.6.6"),  # a client that writes its own header: not believed
            (BALANCER, "6.6.6.6, 203.0.113.9"),  # the balancer's last hop: believed
        ]
        for source, forwarded in attempts:
            async with _from(source, url) as client:
                body = {"code": "1234", "store_id": "s-1", "request_no": uuid.uuid4().hex}
                answer = await client.post(
                    "/v1/redemptions", json=body, headers={**staff, "X-Forwarded-For": forwarded}
                )
                assert answer.status_code == 422, answer.text
        # A client that reaches the service directly, past the gateway, is not believed either.
        async with _from(CLIENT, redemption) as direct:
            body = {"code": "1234", "store_id": "s-1", "request_no": uuid.uuid4().hex}
            await direct.post("/v1/redemptions", json=body, headers={**staff, "X-Forwarded-For": "6.6.6.6"})
            log = (await direct.get("/v1/redemptions/attempts", headers=staff)).json()
    assert sorted(attempt["ip"] for attempt in log["items"]) == sorted([CLIENT, "203.0.113.9", CLIENT])
