"""QR secrets are sealed at rest with REDEMPTION_VAULT_KEY, bound to their code; the migration seals the secrets
of codes issued before it, and their QR tokens keep working."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from alembic import command

from services.redemption import codes
from services.redemption.app import create_app
from shared import migrations
from shared.clock import FrozenClock
from shared.db import create_engine, create_sessionmaker
from shared.vault import Vault, new_key
from tests.redemption.conftest import CUSTOMER, MERCHANT, START, RedemptionHarness, redemption_settings
from tests.support import run_sql, serve


async def test_a_new_codes_secret_is_stored_sealed(redemption: RedemptionHarness) -> None:
    r = redemption
    code = await r.order_paid("o-1")
    [(sealed,)] = await r.sql("SELECT secret_sealed FROM code")
    token = code["qr_token"]
    assert len(bytes(sealed)) == 1 + 12 + 20 + 16  # version, nonce, the 20-byte secret, tag: never the bare secret
    assert (await r.redeem(qr_token=token)).status_code == 201


async def test_the_migration_seals_the_secrets_of_earlier_codes(
    redemption_db_url: str, bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = migrations.alembic_config("redemption", redemption_db_url)
    await asyncio.to_thread(command.downgrade, config, "redemption_0002")
    secret, code_id = codes.new_secret(), uuid.uuid4()
    number = "1234567890" + "1"
    number += str(codes.damm_digit(number))
    settings = redemption_settings(redemption_db_url, bootstrap, vault_key=new_key())
    engine = create_engine(redemption_db_url, pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    await run_sql(
        sessionmaker,
        "INSERT INTO code (id, code, kind, status, order_id, merchant_id, store_id, customer_id, title, summary,"
        " uses_total, uses_left, cycles, secret, valid_from, valid_until, issued_at, updated_at) VALUES (:id, :code,"
        " 'pickup', 'active', 'o-1', 'm-1', 's-1', 'openid-alice', '取餐码', '{}', 1, 1, 0, :secret, :start,"
        " :until, :start, :start)",
        id=code_id, code=number, secret=secret, start=START, until=START + timedelta(hours=72),
    )  # fmt: skip
    monkeypatch.setenv("REDEMPTION_VAULT_KEY", settings.vault_key)
    await asyncio.to_thread(migrations.upgrade, "redemption", redemption_db_url)
    [(sealed,)] = await run_sql(sessionmaker, "SELECT secret_sealed FROM code")
    await engine.dispose()
    assert secret not in bytes(sealed)
    assert Vault(settings.vault_key, "REDEMPTION_VAULT_KEY").open_bytes(bytes(sealed), str(code_id)) == secret
    app = create_app(settings, clock=FrozenClock(START))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        mine = (await client.get(f"/v1/codes/{code_id}", headers=CUSTOMER)).json()
        assert mine["qr_token"] == codes.qr_token(code_id, secret, START)  # the same secret, unsealed
        redeemed = await client.post(
            "/v1/redemptions",
            json={"qr_token": mine["qr_token"], "store_id": "s-1", "request_no": "req-000001"},
            headers=MERCHANT,
        )
        assert redeemed.status_code == 201
