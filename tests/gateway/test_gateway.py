"""The gateway over real HTTP: token checks, roles, request ids, upstream failures, limits, WeChat login."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from deploy.local.ports import free_port
from gateway.app import create_app
from gateway.settings import GatewaySettings
from shared.auth import TokenVerifier
from shared.errors import Unauthorized
from shared.keys import generate_signing_key, public_pem
from tests.support import serve

SIGNING_KEY = generate_signing_key()


def fake_upstream() -> FastAPI:
    """Stands in for a service (echo, slow) and for WeChat's jscode2session, each on its real path."""
    app = FastAPI()

    async def echo(request: Request) -> dict[str, Any]:
        body = await request.body()
        return {
            "headers": dict(request.headers),
            "body_bytes": len(body),
            "query": str(request.url.query),
            "raw_path": request.scope["raw_path"].decode(),
        }

    app.get("/v1/orders/echo", operation_id="echo_get")(echo)
    app.post("/v1/orders/echo", operation_id="echo_post")(echo)

    @app.get("/v1/orders/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(3)
        return {"late": "yes"}

    @app.post("/v1/carriers/dada/callback")
    async def carrier_callback() -> dict[str, int]:
        return {"status": 200}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/sns/jscode2session")
    async def jscode2session(appid: str, secret: str, js_code: str, grant_type: str) -> PlainTextResponse:
        # WeChat answers JSON with a text/plain content type.
        if js_code == "bad-code":
            return PlainTextResponse('{"errcode":40029,"errmsg":"invalid code"}')
        body = f'{{"openid":"o-{js_code}","session_key":"k","unionid":"u-{js_code}"}}'
        return PlainTextResponse(body)

    return app


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[str]:
    async with serve(fake_upstream()) as url:
        yield url


def _settings(upstream: str, **overrides: Any) -> GatewaySettings:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    values: dict[str, Any] = {
        "order_url": upstream,
        "dispatch_url": upstream,
        "redemption_url": dead,
        "aftersales_url": upstream,
        "notify_url": upstream,
        "signing_key": SIGNING_KEY,
        "upstream_timeout_seconds": 1.0,
        "dev_mode": True,
        "wechat_mode": "sandbox",
        "cors_origins": ["http://localhost:5173"],
        **overrides,
    }
    return GatewaySettings(**values)


@pytest.fixture
async def gateway(upstream: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(_settings(upstream))) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


def _claims(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims = {
        "sub": "c-1",
        "role": "customer",
        "iss": "songda",
        "aud": "songda",
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, Any], key: str = SIGNING_KEY, kid: str | None = "songda-1") -> str:
    private = serialization.load_pem_private_key(key.encode(), password=None)
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, private, algorithm="EdDSA", headers=headers)  # type: ignore[arg-type]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_valid_token_reaches_the_upstream(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/orders/echo?page=2", headers=_bearer(_sign(_claims())))
    assert response.status_code == 200
    assert response.json()["query"] == "page=2"


def _hs256_with_public_key() -> str:
    # The classic algorithm-confusion attack: HMAC keyed with the server's public key.
    import base64
    import hashlib
    import hmac
    import json

    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(_claims(iat=None, exp=int(datetime.now(UTC).timestamp()) + 300)).encode())
    secret = public_pem(serialization.load_pem_private_key(SIGNING_KEY.encode(), password=None)).encode()  # type: ignore[arg-type]
    signature = b64(hmac.new(secret, header + b"." + payload, hashlib.sha256).digest())
    return (header + b"." + payload + b"." + signature).decode()


def _alg_none() -> str:
    return jwt.encode(_claims(), key=None, algorithm="none")


@pytest.mark.parametrize(
    ("case", "token"),
    [
        ("expired", lambda: _sign(_claims(exp=datetime.now(UTC) - timedelta(minutes=5)))),
        ("wrong audience", lambda: _sign(_claims(aud="someone-else"))),
        ("wrong issuer", lambda: _sign(_claims(iss="evil"))),
        ("no exp", lambda: _sign(_claims(exp=None))),
        ("no iat", lambda: _sign(_claims(iat=None))),
        ("alg none", _alg_none),
        ("hs256 with the public key", _hs256_with_public_key),
        ("another key", lambda: _sign(_claims(), key=generate_signing_key())),
        ("unknown role", lambda: _sign(_claims(role="admin"))),
        ("garbage", lambda: "not.a.jwt"),
    ],
)
async def test_bad_tokens_are_refused(gateway: httpx.AsyncClient, case: str, token: Any) -> None:
    response = await gateway.get("/v1/orders/echo", headers=_bearer(token()))
    assert response.status_code == 401, case
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_missing_token_is_refused(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/orders/echo")
    assert response.status_code == 401
    assert response.json()["type"] == "/problems/unauthorized"


async def test_a_role_not_admitted_is_forbidden(gateway: httpx.AsyncClient) -> None:
    rider = _bearer(_sign(_claims(role="rider", sub="r-1")))
    response = await gateway.get("/v1/aftersales/cases", headers=rider)
    assert response.status_code == 403
    assert response.json()["status"] == 403


async def test_carrier_callbacks_pass_without_a_token(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post("/v1/carriers/dada/callback", json={"order_id": "x"})
    assert response.status_code == 200
    assert response.json() == {"status": 200}


async def test_the_request_id_is_echoed_and_passed_on_with_traceparent(gateway: httpx.AsyncClient) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = await gateway.post(
        "/v1/orders/echo",
        headers={
            **_bearer(_sign(_claims())),
            "X-Request-ID": "req-42",
            "traceparent": traceparent,
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "must not pass",
        },
        content=b"x" * 1000,
    )
    assert response.headers["x-request-id"] == "req-42"
    seen = response.json()["headers"]
    assert seen["x-request-id"] == "req-42"
    assert seen["traceparent"] == traceparent
    assert "x-secret-hop" not in seen
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert response.json()["body_bytes"] == 1000
    made_up = await gateway.get("/healthz")
    assert len(made_up.headers["x-request-id"]) == 32


async def test_an_upstream_timeout_is_a_504(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/orders/slow", headers=_bearer(_sign(_claims())))
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_upstream_that_is_down_is_a_503(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/codes/123", headers=_bearer(_sign(_claims())))
    assert response.status_code == 503
    assert response.json()["type"] == "/problems/upstream-unavailable"


async def test_readyz_names_the_upstream_that_is_not_ready(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["upstreams"]["redemption"]["ready"] is False
    assert body["upstreams"]["order"]["ready"] is True


async def test_an_unknown_path_is_a_404_problem(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v2/nothing", headers=_bearer(_sign(_claims())))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_principal_rate_limit_answers_429_with_retry_after(upstream: str) -> None:
    settings = _settings(upstream, rate_limit_principal_per_second=0.5, rate_limit_principal_burst=3)
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        headers = _bearer(_sign(_claims(sub=f"c-{uuid.uuid4().hex}")))
        statuses = [(await client.get("/v1/orders/echo", headers=headers)).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        limited = await client.get("/v1/orders/echo", headers=headers)
        assert int(limited.headers["retry-after"]) >= 1
        # Another customer is not limited by the first one's spending.
        other = _bearer(_sign(_claims(sub="c-other")))
        assert (await client.get("/v1/orders/echo", headers=other)).status_code == 200


async def test_the_ip_rate_limit_covers_public_routes(upstream: str) -> None:
    settings = _settings(upstream, rate_limit_ip_per_second=0.5, rate_limit_ip_burst=2)
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        statuses = [(await client.post("/v1/auth/wechat/login", json={"code": "abc"})).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]


async def test_callbacks_are_limited_by_their_caller_not_by_address(upstream: str) -> None:
    settings = _settings(
        upstream,
        rate_limit_ip_per_second=0.5,
        rate_limit_ip_burst=2,
        rate_limit_callback_per_second=0.5,
        rate_limit_callback_burst=5,
    )
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        # One carrier's burst from one address goes beyond the per-address limit and is accepted.
        statuses = [(await client.post("/v1/carriers/dada/callback", json={})).status_code for _ in range(5)]
        assert statuses == [200] * 5
        # A flood naming that carrier is limited, with the caller named in the problem.
        limited = await client.post("/v1/carriers/dada/callback", json={})
        assert limited.status_code == 429
        assert "callbacks" in limited.json()["detail"]
        assert int(limited.headers["retry-after"]) >= 1
        # The address's own budget is untouched by the callbacks; another carrier has its own.
        assert (await client.post("/v1/auth/wechat/login", json={"code": "abc"})).status_code == 200
        other = await client.post("/v1/carriers/sf/callback", json={})
        assert other.status_code != 429
        # The payment provider's notifications too: a burst from one address beyond its limit passes the gateway.
        notices = [(await client.post("/v1/payments/wechatpay/callback", json={})).status_code for _ in range(4)]
        assert 429 not in notices


async def test_a_body_over_the_limit_is_a_413(upstream: str) -> None:
    app = create_app(_settings(upstream, max_body_bytes=1000))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        token = _bearer(_sign(_claims()))
        declared = await client.post("/v1/orders/echo", headers=token, content=b"x" * 2000)
        assert declared.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"y" * 600

        streamed = await client.post("/v1/orders/echo", headers=token, content=chunks())
        assert streamed.status_code == 413


async def test_wechat_login_in_sandbox_mode_issues_a_customer_token(gateway: httpx.AsyncClient) -> None:
    first = await gateway.post("/v1/auth/wechat/login", json={"code": "0a1b2c"})
    again = await gateway.post("/v1/auth/wechat/login", json={"code": "0a1b2c"})
    assert first.status_code == 200
    assert first.json()["role"] == "customer"
    assert first.json()["sub"] == again.json()["sub"]
    token = first.json()["access_token"]
    assert (await gateway.get("/v1/orders/echo", headers=_bearer(token))).status_code == 200
    empty = await gateway.post("/v1/auth/wechat/login", json={"code": ""})
    assert empty.status_code == 422
    assert empty.headers["content-type"] == "application/problem+json"


async def test_wechat_login_through_the_real_adapter(upstream: str) -> None:
    settings = _settings(
        upstream, wechat_mode="wechat", wechat_api_base=upstream, wechat_appid="wx-1", wechat_secret="s3cret"
    )
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        ok = await client.post("/v1/auth/wechat/login", json={"code": "abc"})
        assert ok.status_code == 200
        assert ok.json()["sub"] == "o-abc"
        refused = await client.post("/v1/auth/wechat/login", json={"code": "bad-code"})
        assert refused.status_code == 401
        assert "40029" in refused.json()["detail"]


async def test_tokens_verify_against_the_published_jwks(gateway: httpx.AsyncClient) -> None:
    minted = await gateway.post(
        "/v1/auth/dev-token",
        json={"role": "merchant", "sub": "m-staff", "merchant_id": "m-1", "store_ids": ["s-1"]},
    )
    assert minted.status_code == 200
    verifier = TokenVerifier(issuer="songda", audience="songda", jwks_url=f"{gateway.base_url}/.well-known/jwks.json")
    principal = await verifier.verify(minted.json()["access_token"])
    assert (principal.role, principal.merchant_id, principal.store_ids) == ("merchant", "m-1", ["s-1"])
    with pytest.raises(Unauthorized):
        await verifier.verify(_sign(_claims(), key=generate_signing_key()))


async def test_dev_tokens_exist_only_in_dev_mode(upstream: str) -> None:
    settings = _settings(upstream, dev_mode=False, wechat_mode="wechat", wechat_appid="wx-1", wechat_secret="s")
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as c:
        response = await c.post("/v1/auth/dev-token", json={"role": "ops", "sub": "x"})
        assert response.status_code == 404  # the route does not exist at all


async def test_one_openapi_document_covers_the_upstreams(gateway: httpx.AsyncClient) -> None:
    document = (await gateway.get("/openapi.json")).json()
    assert "/v1/orders/echo" in document["paths"]
    assert "/v1/auth/wechat/login" in document["paths"]
    assert document["info"]["x-unavailable-services"] == ["redemption"]
    assert (await gateway.get("/docs")).status_code == 200


async def test_cors_preflight_from_the_console_origin(gateway: httpx.AsyncClient) -> None:
    response = await gateway.options(
        "/v1/orders",
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_ed25519_keys_are_what_the_stack_generates() -> None:
    key = serialization.load_pem_private_key(generate_signing_key().encode(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
