"""`songda staff invite`: the first ops account of a gateway without dev tokens, made in its identity database."""

from __future__ import annotations

import asyncio

import pytest

from deploy.cli import main
from tests.gateway.test_identity import PASSWORD, identity_gateway


async def test_the_first_ops_account_is_invited_from_the_command_line(
    gateway_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    invite = ["staff", "invite", "--database-url", gateway_db_url, "--login", "Root@Ops.example"]
    assert await asyncio.to_thread(main, invite) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert await asyncio.to_thread(main, invite) == 1
    assert "login" in capsys.readouterr().err
    assert await asyncio.to_thread(main, [*invite[:4], "--login", "x@m", "--role", "merchant"]) == 1
    assert await asyncio.to_thread(main, [*invite[:4], "--login", "two words"]) == 2
    async with identity_gateway(gateway_db_url) as identity:
        accepted = await identity.client.post("/v1/auth/password", json={"token": token, "password": PASSWORD})
        assert accepted.status_code == 200, accepted.text
        ops = await identity.sign_in("root@ops.example")
        assert (ops["role"], ops["merchant_id"]) == ("ops", None)
        # It manages merchants' admins.
        await identity.invite(
            {"Authorization": f"Bearer {ops['access_token']}"},
            login="admin@m-1", role="merchant", merchant_id="m-1", admin=True,
        )  # fmt: skip
