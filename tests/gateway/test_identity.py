"""Staff sign-in at the gateway over real HTTP and its own migrated database: invitations, sign-in, refresh rotation
and reuse, disabled accounts, store scoping through the real order service, throttling, the OIDC exchange."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deploy.local.ports import free_port
from gateway.app import create_app
from gateway.settings import GatewaySettings
from services.order.app import create_app as create_order_app
from services.order.settings import OrderSettings
from shared.auth import TokenVerifier, VerificationKey
from shared.clock import FrozenClock
from shared.db import create_engine, create_sessionmaker
from shared.keys import generate_signing_key, public_pem
from tests.support import run_sql, serve

SIGNING_KEY = generate_signing_key()
PRIVATE_KEY = serialization.load_pem_private_key(SIGNING_KEY.encode(), password=None)
PASSWORD = "correct horse battery"


def _songda_token(**claims: Any) -> dict[str, str]:
    """A token the gateway signed (the dev way), for the ops who start everything. Signed when the module is imported,
    so it outlives the whole suite (these tests may run many minutes after collection)."""
    now = datetime.now(UTC)
    body = {"iss": "songda", "aud": "songda", "iat": now, "exp": now + timedelta(hours=2), **claims}
    token = jwt.encode(body, PRIVATE_KEY, algorithm="EdDSA", headers={"kid": "songda-1"})  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


OPS = _songda_token(sub="ops-1", role="ops")


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@dataclass
class Identity:
    client: httpx.AsyncClient
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: FrozenClock
    settings: GatewaySettings

    async def sql(self, statement: str, **params: Any) -> Any:
        return await run_sql(self.sessionmaker, statement, **params)

    async def invite(self, by: dict[str, str], expect: int = 201, **body: Any) -> dict[str, Any]:
        body = {"display_name": body.get("login", "x"), **body}
        response = await self.client.post("/v1/staff", json=body, headers=by)
        assert response.status_code == expect, response.text
        return dict(response.json())

    async def account(self, by: dict[str, str], **body: Any) -> dict[str, Any]:
        """Invites, sets the password with the invitation, signs in: the new account's tokens."""
        invitation = await self.invite(by, **body)
        accepted = await self.client.post(
            "/v1/auth/password", json={"token": invitation["token"], "password": PASSWORD}
        )
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["has_password"] is True
        return await self.sign_in(body["login"])

    async def sign_in(self, login: str, password: str = PASSWORD, expect: int = 200, **headers: str) -> dict[str, Any]:
        response = await self.client.post("/v1/auth/sign-in", json={"login": login, "password": password},
                                          headers=headers)  # fmt: skip
        assert response.status_code == expect, response.text
        return dict(response.json())

    async def refresh(self, token: str, expect: int = 200) -> dict[str, Any]:
        response = await self.client.post("/v1/auth/refresh", json={"refresh_token": token})
        assert response.status_code == expect, response.text
        return dict(response.json())


@contextlib.asynccontextmanager
async def identity_gateway(db_url: str, **overrides: Any) -> AsyncIterator[Identity]:
    dead = f"http://127.0.0.1:{free_port()}"
    values: dict[str, Any] = {
        **{f"{service}_url": dead for service in ("order", "dispatch", "redemption", "aftersales", "notify")},
        "signing_key": SIGNING_KEY,
        "wechat_appid": "wx-identity-test",
        "wechat_secret": "unused",
        "database_url": db_url,
        **overrides,
    }
    settings = GatewaySettings(**values)
    clock = FrozenClock()
    engine = create_engine(db_url, pool_size=2)
    try:
        async with serve(create_app(settings, clock=clock)) as url, httpx.AsyncClient(base_url=url) as client:
            yield Identity(client, create_sessionmaker(engine), clock, settings)
    finally:
        await engine.dispose()


@pytest.fixture
async def identity(gateway_db_url: str) -> AsyncIterator[Identity]:
    async with identity_gateway(gateway_db_url) as stack:
        yield stack


async def test_an_invited_admin_signs_in_with_the_tokens_services_verify(identity: Identity) -> None:
    tokens = await identity.account(OPS, login="Admin@M1.example", role="merchant", merchant_id="m-1", admin=True)
    assert (tokens["role"], tokens["merchant_id"], tokens["store_ids"]) == ("merchant", "m-1", [])
    assert tokens["expires_in"] == identity.settings.staff_access_token_ttl_seconds
    # The key and claims every service verifies with: the gateway's public key, its kid.
    header = jwt.get_unverified_header(tokens["access_token"])
    assert (header["alg"], header["kid"]) == ("EdDSA", "songda-1")
    verifier = TokenVerifier(
        issuer="songda", audience="songda", public_keys=[VerificationKey(PRIVATE_KEY.public_key(), "songda-1")]
    )
    principal = await verifier.verify(tokens["access_token"])
    assert (principal.sub, principal.role, principal.merchant_id) == (tokens["sub"], "merchant", "m-1")
    # The login is compared without case; the password hash is argon2id; only hashes of refresh tokens are kept.
    assert (await identity.sign_in("admin@m1.example"))["sub"] == tokens["sub"]
    ((stored,),) = await identity.sql("SELECT password_hash FROM staff_account")
    assert stored.startswith("$argon2id$")
    hashes = {row[0] for row in await identity.sql("SELECT token_hash FROM refresh_token")}
    assert hashlib.sha256(tokens["refresh_token"].encode()).hexdigest() in hashes
    assert tokens["refresh_token"] not in hashes
    # A wrong password and an unknown login read the same.
    wrong = await identity.sign_in("admin@m1.example", "not the password", expect=401)
    unknown = await identity.sign_in("nobody@m1.example", expect=401)
    assert wrong["type"] == unknown["type"] == "/problems/sign-in-failed"


async def test_an_invitation_sets_a_password_once(identity: Identity) -> None:
    invitation = await identity.invite(OPS, login="rider-1", role="rider", merchant_id="m-1")
    assert invitation["account"]["has_password"] is False
    await identity.sign_in("rider-1", expect=401)  # no password yet
    body = {"token": invitation["token"], "password": PASSWORD}
    assert (await identity.client.post("/v1/auth/password", json=body)).status_code == 200
    again = await identity.client.post("/v1/auth/password", json={**body, "password": "a different one"})
    assert (again.status_code, again.json()["type"]) == (401, "/problems/invitation-not-valid")
    short = await identity.client.post("/v1/auth/password", json={**body, "password": "short"})
    assert short.status_code == 422
    assert (await identity.sign_in("rider-1"))["role"] == "rider"


async def test_refresh_rotates_and_a_reused_token_revokes_its_family(identity: Identity) -> None:
    first = await identity.account(OPS, login="staff-a", role="merchant", merchant_id="m-1", store_ids=["s-1"])
    other_sign_in = await identity.sign_in("staff-a")
    second = await identity.refresh(first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    third = await identity.refresh(second["refresh_token"])
    # The first token again: someone else holds a copy. Its whole family dies, the newest token too.
    reused = await identity.refresh(first["refresh_token"], expect=401)
    assert reused["type"] == "/problems/refresh-refused"
    await identity.refresh(third["refresh_token"], expect=401)
    # Another sign-in of the same account is another family, untouched.
    assert (await identity.refresh(other_sign_in["refresh_token"]))["sub"] == first["sub"]


async def test_sign_out_revokes_the_sign_in(identity: Identity) -> None:
    tokens = await identity.account(OPS, login="staff-b", role="merchant", merchant_id="m-1")
    rotated = await identity.refresh(tokens["refresh_token"])
    signed_out = await identity.client.post("/v1/auth/sign-out", json={"refresh_token": rotated["refresh_token"]})
    assert signed_out.status_code == 204
    await identity.refresh(rotated["refresh_token"], expect=401)


async def test_a_disabled_account_can_neither_sign_in_nor_refresh(identity: Identity) -> None:
    admin = await identity.account(OPS, login="admin-m1", role="merchant", merchant_id="m-1", admin=True)
    staff = await identity.account(_bearer(admin), login="staff-c", role="merchant", store_ids=["s-1"])
    assert staff["merchant_id"] == "m-1"  # an admin invites into its own merchant
    disabled = await identity.client.post(f"/v1/staff/{staff['sub']}/disable", headers=_bearer(admin))
    assert (disabled.status_code, disabled.json()["disabled"]) == (200, True)
    assert (await identity.sign_in("staff-c", expect=401))["detail"] == "This account is disabled"
    await identity.refresh(staff["refresh_token"], expect=401)
    enabled = await identity.client.post(f"/v1/staff/{staff['sub']}/enable", headers=_bearer(admin))
    assert enabled.status_code == 200
    again = await identity.sign_in("staff-c")
    await identity.refresh(staff["refresh_token"], expect=401)  # revoked sign-ins stay revoked
    await identity.refresh(again["refresh_token"])


async def test_a_reset_password_stops_the_old_one_and_its_sign_ins(identity: Identity) -> None:
    admin = await identity.account(OPS, login="admin-m1", role="merchant", merchant_id="m-1", admin=True)
    staff = await identity.account(_bearer(admin), login="staff-d", role="merchant")
    reset = await identity.client.post(f"/v1/staff/{staff['sub']}/password-reset", headers=_bearer(admin))
    assert reset.status_code == 200, reset.text
    await identity.sign_in("staff-d", expect=401)
    await identity.refresh(staff["refresh_token"], expect=401)
    body = {"token": reset.json()["token"], "password": "a brand new password"}
    assert (await identity.client.post("/v1/auth/password", json=body)).status_code == 200
    await identity.sign_in("staff-d", "a brand new password")


async def test_admins_manage_their_own_merchants_staff_only(identity: Identity) -> None:
    admin = _bearer(await identity.account(OPS, login="admin-m1", role="merchant", merchant_id="m-1", admin=True))
    other_admin = await identity.invite(OPS, login="admin-m2", role="merchant", merchant_id="m-2", admin=True)
    other_staff = await identity.invite(OPS, login="staff-m2", role="merchant", merchant_id="m-2")
    own = await identity.invite(admin, login="staff-m1", role="merchant", store_ids=["s-1"])
    # Only ops appoint admins and ops, and an admin invites into its own merchant.
    await identity.invite(admin, login="admin-2", role="merchant", admin=True, expect=403)
    await identity.invite(admin, login="ops-2", role="ops", expect=403)
    await identity.invite(admin, login="staff-x", role="merchant", merchant_id="m-2", expect=403)
    await identity.invite(admin, login="staff-m1", role="rider", expect=409)
    listed = (await identity.client.get("/v1/staff", headers=admin)).json()
    assert sorted(a["login"] for a in listed) == ["admin-m1", "staff-m1"]
    other_id = other_staff["account"]["id"]
    assert (await identity.client.post(f"/v1/staff/{other_id}/disable", headers=admin)).status_code == 404
    other_admin_id = other_admin["account"]["id"]
    assert (await identity.client.get(f"/v1/staff/{other_admin_id}", headers=admin)).status_code == 404
    scoped = await identity.client.put(
        f"/v1/staff/{own['account']['id']}/stores", json={"store_ids": ["s-2", "s-1"]}, headers=admin
    )
    assert scoped.json()["store_ids"] == ["s-1", "s-2"]
    # Ops see every merchant; a staff token that is not an admin's manages no one.
    assert len((await identity.client.get("/v1/staff", headers=OPS)).json()) == 4
    assert len((await identity.client.get("/v1/staff?merchant_id=m-2", headers=OPS)).json()) == 2
    not_admin = _songda_token(sub=own["account"]["id"], role="merchant", merchant_id="m-1")
    refused = await identity.client.get("/v1/staff", headers=not_admin)
    assert (refused.status_code, refused.headers["content-type"]) == (403, "application/problem+json")
    assert (await identity.client.get("/v1/staff")).status_code == 401


async def test_a_store_scoped_staff_token_cannot_act_on_another_store(
    gateway_db_url: str, db_url: str, bootstrap: str
) -> None:
    order_settings = OrderSettings(
        database_url=db_url, kafka_bootstrap_servers=bootstrap, jwt_public_keys=public_pem(PRIVATE_KEY),  # type: ignore[arg-type]
        run_workers=False,
    )  # fmt: skip
    async with (
        serve(create_order_app(order_settings)) as order_url,
        identity_gateway(gateway_db_url, order_url=order_url) as identity,
    ):
        admin = _bearer(await identity.account(OPS, login="admin-m1", role="merchant", merchant_id="m-1", admin=True))
        for store_id in ("s-1", "s-2"):
            created = await identity.client.post("/v1/stores", json=_store(store_id), headers=admin)
            assert created.status_code == 201, created.text
        staff = await identity.account(admin, login="counter-s1", role="merchant", store_ids=["s-1"])
        assert staff["store_ids"] == ["s-1"]
        own = await identity.client.patch("/v1/stores/s-1", json={"min_order_fen": 1}, headers=_bearer(staff))
        assert own.status_code == 200, own.text
        other = await identity.client.patch("/v1/stores/s-2", json={"min_order_fen": 1}, headers=_bearer(staff))
        assert other.status_code == 404
        # Widening the scope shows in the next access token, at the next refresh.
        await identity.client.put(f"/v1/staff/{staff['sub']}/stores", json={"store_ids": ["s-1", "s-2"]}, headers=admin)
        wider = await identity.refresh(staff["refresh_token"])
        widened = await identity.client.patch("/v1/stores/s-2", json={"min_order_fen": 1}, headers=_bearer(wider))
        assert widened.status_code == 200, widened.text


def _store(store_id: str) -> dict[str, Any]:
    return {
        "id": store_id, "name": f"Store {store_id}", "phone": "010-12345678", "address": "东城区 1 号",
        "lat": 39.9087, "lng": 116.3975, "opening_hours": [], "range_radius_m": 3000, "min_order_fen": 2000,
        "delivery_base_fen": 500, "fulfilment_modes": ["delivery", "pickup"],
    }  # fmt: skip


async def test_failed_sign_ins_are_throttled_per_login_until_the_window_closes(identity: Identity) -> None:
    await identity.account(OPS, login="staff-e", role="merchant", merchant_id="m-1")
    for _ in range(identity.settings.sign_in_failures_per_account):
        await identity.sign_in("staff-e", "guess guess", expect=401)
    # Even the right password now waits: the guesser cannot tell it was right.
    refused = await identity.client.post("/v1/auth/sign-in", json={"login": "staff-e", "password": PASSWORD})
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) == identity.settings.sign_in_window_seconds
    # Another login from the same address is not locked out by this one.
    await identity.account(OPS, login="staff-f", role="merchant", merchant_id="m-1")
    identity.clock.advance(timedelta(seconds=identity.settings.sign_in_window_seconds))
    await identity.sign_in("staff-e")


async def test_failed_sign_ins_are_throttled_per_client_address_as_the_gateway_decides_it(
    gateway_db_url: str,
) -> None:
    async with identity_gateway(gateway_db_url, sign_in_failures_per_address=3) as identity:
        await identity.account(OPS, login="staff-g", role="merchant", merchant_id="m-1")
        # A client behind no trusted proxy rotating X-Forwarded-For is still one address, whatever login it tries.
        for attempt in range(3):
            spoofed = {"X-Forwarded-For": f"198.51.100.{attempt}"}
            await identity.sign_in(f"someone-{attempt}", "guess guess", expect=401, **spoofed)
        refused = await identity.client.post(
            "/v1/auth/sign-in", json={"login": "staff-g", "password": PASSWORD}, headers={"X-Forwarded-For": "1.2.3.4"}
        )
        assert (refused.status_code, refused.json()["type"]) == (429, "/problems/rate-limited")
        assert int(refused.headers["retry-after"]) > 0
    # Behind a trusted proxy, the address it reports is the client's: another client is not held back.
    async with identity_gateway(
        gateway_db_url, sign_in_failures_per_address=3, trusted_proxies=["127.0.0.1/32"]
    ) as behind_proxy:
        assert (await behind_proxy.sign_in("staff-g", **{"X-Forwarded-For": "203.0.113.9"}))["role"] == "merchant"
        for attempt in range(3):
            await behind_proxy.sign_in(f"x-{attempt}", "guess guess", expect=401, **{"X-Forwarded-For": "203.0.113.7"})
        await behind_proxy.sign_in("staff-g", expect=429, **{"X-Forwarded-For": "203.0.113.7"})
        await behind_proxy.sign_in("staff-g", **{"X-Forwarded-For": "203.0.113.8"})


async def test_identity_routes_are_in_the_gateways_openapi_document(identity: Identity) -> None:
    paths = (await identity.client.get("/openapi.json")).json()["paths"]
    for path in ("/v1/auth/sign-in", "/v1/auth/refresh", "/v1/auth/sign-out", "/v1/auth/password", "/v1/staff",
                 "/v1/staff/{account_id}/stores", "/v1/staff/{account_id}/disable",
                 "/v1/staff/{account_id}/password-reset"):  # fmt: skip
        assert path in paths, path


# The merchant's own identity provider: an RSA key published as JWKS by a server of its own.
PROVIDER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PROVIDER = "https://login.merchant.example"


def jwks_server() -> FastAPI:
    app = FastAPI()
    jwk = json.loads(jwt.get_algorithm_by_name("RS256").to_jwk(PROVIDER_KEY.public_key()))

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, Any]:
        return {"keys": [{**jwk, "kid": "provider-1", "use": "sig", "alg": "RS256"}]}

    return app


def _provider_token(issuer: str = PROVIDER, **claims: Any) -> str:
    now = datetime.now(UTC)
    body = {"iss": issuer, "aud": "songda-console", "sub": "u-42", "iat": now, "exp": now + timedelta(minutes=10),
            **claims}  # fmt: skip
    return jwt.encode(body, PROVIDER_KEY, algorithm="RS256", headers={"kid": "provider-1"})


async def test_a_merchants_oidc_token_is_exchanged_with_its_claims_mapped() -> None:
    async with serve(jwks_server()) as provider_url:
        oidc = {
            "oidc_issuer": PROVIDER,
            "oidc_jwks_url": f"{provider_url}/.well-known/jwks.json",
            "oidc_audience": "songda-console",
            "oidc_merchant_claim": "https://songda/merchant",
            "oidc_stores_claim": "shops",
            "oidc_role_claim": "songda_role",
            "oidc_merchant_ids": ["m-1"],
        }
        dead = f"http://127.0.0.1:{free_port()}"
        urls = {f"{s}_url": dead for s in ("order", "dispatch", "redemption", "aftersales", "notify")}
        settings = GatewaySettings(
            signing_key=SIGNING_KEY, wechat_appid="wx-identity-test", wechat_secret="unused", **urls, **oidc
        )
        async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:

            async def exchange(token: str) -> httpx.Response:
                return await client.post("/v1/auth/oidc/exchange", json={"token": token})

            claims = {"https://songda/merchant": "m-1", "shops": ["s-1"], "songda_role": "merchant"}
            answer = await exchange(_provider_token(**claims))
            assert answer.status_code == 200, answer.text
            verifier = TokenVerifier(
                issuer="songda", audience="songda", public_keys=[VerificationKey(PRIVATE_KEY.public_key(), "songda-1")]
            )
            principal = await verifier.verify(answer.json()["access_token"])
            assert (principal.sub, principal.role, principal.merchant_id, principal.store_ids) == (
                "oidc:u-42", "merchant", "m-1", ["s-1"],
            )  # fmt: skip
            assert answer.json()["expires_in"] <= 600

            wrong_issuer = await exchange(_provider_token("https://evil.example", **claims))
            assert (wrong_issuer.status_code, wrong_issuer.headers["content-type"]) == (401, "application/problem+json")
            other_merchant = await exchange(_provider_token(**{**claims, "https://songda/merchant": "m-2"}))
            assert other_merchant.status_code == 403
            ops = await exchange(_provider_token(**{**claims, "songda_role": "ops"}))
            assert ops.status_code == 403
            forged = jwt.encode(
                jwt.decode(_provider_token(**claims), options={"verify_signature": False}),
                rsa.generate_private_key(public_exponent=65537, key_size=2048),
                algorithm="RS256",
                headers={"kid": "provider-1"},
            )
            assert (await exchange(forged)).status_code == 401


def test_an_oidc_issuer_without_its_keys_audience_or_merchants_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="GATEWAY_OIDC_MERCHANT_IDS"):
        GatewaySettings(signing_key=SIGNING_KEY, oidc_issuer=PROVIDER, oidc_jwks_url="http://idp/jwks")


async def test_ops_manage_merchants_admins(identity: Identity) -> None:
    admin = await identity.account(OPS, login="admin-m1", role="merchant", merchant_id="m-1", admin=True)
    peer = await identity.account(OPS, login="admin-m1b", role="merchant", merchant_id="m-1", admin=True)
    # One admin does not manage another; ops do.
    assert (await identity.client.post(f"/v1/staff/{peer['sub']}/disable", headers=_bearer(admin))).status_code == 403
    assert (await identity.client.post(f"/v1/staff/{admin['sub']}/disable", headers=OPS)).status_code == 200
    # A disabled admin's access token, still unexpired, manages no one any more.
    assert (await identity.client.get("/v1/staff", headers=_bearer(admin))).status_code == 403
    scoped = await identity.client.put(f"/v1/staff/{peer['sub']}/stores", json={"store_ids": ["s-1"]}, headers=OPS)
    assert scoped.status_code == 409  # an admin acts for every store
