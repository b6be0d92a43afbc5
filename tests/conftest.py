"""Fixtures over the real infrastructure: the launcher's embedded PostgreSQL and Tansu broker (or the ones named by
SONGDA_POSTGRES_URL / SONGDA_KAFKA_BOOTSTRAP_SERVERS), a fresh migrated database per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from deploy.local.launcher import Infra, StackOptions, database_url, start_infra
from deploy.local.ports import PORT_SHARE_ENV
from shared import migrations
from shared.db import create_engine, create_sessionmaker

ROOT = Path(__file__).resolve().parent.parent
# One state directory per pytest-xdist worker (each runs its own PostgreSQL and broker); "test" without xdist.
TEST_STATE = ROOT / ".songda" / "test" / os.environ.get("PYTEST_XDIST_WORKER", "main")
# Each worker's stacks take their ports from a slice of the range of their own: two workers' stacks started at once
# had picked one port for two servers (one's gateway then forwarded to the other's dispatch).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "").removeprefix("gw")
if _WORKER.isdigit():  # a worker that replaced a crashed one (gw2 of 2) shares the slice of its number modulo the count
    os.environ[PORT_SHARE_ENV] = f"{_WORKER}/{os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1')}"


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    # Ports of our own (0: any free one), so a running `make run` is left alone; no fsync, as nothing here must
    # outlive a crash.
    options = StackOptions.from_env(TEST_STATE, postgres_port=0, broker_port=0, fast_postgres=True)
    started = start_infra(options)
    yield started
    started.stop()


@pytest.fixture(scope="session")
def bootstrap(infra: Infra) -> str:
    return infra.bootstrap_servers


async def _admin(infra: Infra, sql: str) -> None:
    """Runs one statement on the server's maintenance database (CREATE/DROP DATABASE need their own connection)."""
    connection = await asyncpg.connect(database_url(infra.postgres_url, "postgres", "postgresql"))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _migrated_template(infra: Infra, service: str) -> str:
    name = f"songda_tpl_{service}_{uuid.uuid4().hex[:8]}"
    await _admin(infra, f'CREATE DATABASE "{name}"')
    await asyncio.to_thread(migrations.upgrade, service, database_url(infra.postgres_url, name))
    return name


async def _clone(infra: Infra, template: str) -> str:
    name = f"songda_t_{uuid.uuid4().hex[:12]}"
    await _admin(infra, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


@pytest.fixture(scope="session")
async def template_database(infra: Infra) -> AsyncIterator[str]:
    """The order service's history migrated once into a template; tests clone it (fast, and isolated)."""
    name = await _migrated_template(infra, "order")
    yield name
    await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def redemption_template(infra: Infra) -> AsyncIterator[str]:
    name = await _migrated_template(infra, "redemption")
    yield name
    await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def dispatch_template(infra: Infra) -> AsyncIterator[str]:
    name = await _migrated_template(infra, "dispatch")
    yield name
    await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def dispatch_db_url(infra: Infra, dispatch_template: str) -> AsyncIterator[str]:
    """A fresh dispatch-service database."""
    name = await _clone(infra, dispatch_template)
    yield database_url(infra.postgres_url, name)
    await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def aftersales_template(infra: Infra) -> AsyncIterator[str]:
    name = await _migrated_template(infra, "aftersales")
    yield name
    await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def aftersales_db_url(infra: Infra, aftersales_template: str) -> AsyncIterator[str]:
    """A fresh aftersales-service database."""
    name = await _clone(infra, aftersales_template)
    yield database_url(infra.postgres_url, name)
    await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def gateway_template(infra: Infra) -> AsyncIterator[str]:
    name = await _migrated_template(infra, "gateway")
    yield name
    await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def gateway_db_url(infra: Infra, gateway_template: str) -> AsyncIterator[str]:
    """A fresh identity database of the gateway."""
    name = await _clone(infra, gateway_template)
    yield database_url(infra.postgres_url, name)
    await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def notify_template(infra: Infra) -> AsyncIterator[str]:
    name = await _migrated_template(infra, "notify")
    yield name
    await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def notify_db_url(infra: Infra, notify_template: str) -> AsyncIterator[str]:
    """A fresh notify-service database."""
    name = await _clone(infra, notify_template)
    yield database_url(infra.postgres_url, name)
    await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db_url(infra: Infra, template_database: str) -> AsyncIterator[str]:
    """A fresh order-service database."""
    name = await _clone(infra, template_database)
    yield database_url(infra.postgres_url, name)
    await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def redemption_db_url(infra: Infra, redemption_template: str) -> AsyncIterator[str]:
    """A fresh redemption-service database."""
    name = await _clone(infra, redemption_template)
    yield database_url(infra.postgres_url, name)
    await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
def topic() -> str:
    return f"t{uuid.uuid4().hex[:10]}.events"
