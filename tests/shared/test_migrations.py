"""Each service's (and the gateway's) migration history is one line (a single head) and builds exactly the tables
its models describe (no drift either way)."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from deploy.local.launcher import Infra, database_url
from shared.migrations import HISTORIES, alembic_config, upgrade
from tests.conftest import _admin


@pytest.mark.parametrize("service", HISTORIES)
async def test_migrations_match_the_models(infra: Infra, service: str) -> None:
    name = f"songda_drift_{service}"
    await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _admin(infra, f'CREATE DATABASE "{name}"')
    try:
        url = database_url(infra.postgres_url, name)
        await asyncio.to_thread(upgrade, service, url)
        await asyncio.to_thread(command.check, alembic_config(service, url))  # raises on any difference
    finally:
        await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("service", HISTORIES)
def test_each_history_has_one_head(service: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(service, "postgresql://unused"))
    assert len(script.get_heads()) == 1, script.get_heads()
