"""TLS to PostgreSQL: the migrations and a service connecting with `sslmode=verify-full` to a server presenting a
certificate from a throwaway CA (the embedded server behind a TLS terminator speaking PostgreSQL's SSLRequest, see
tests/shared/pg_tls_proxy.py), and the connections that must fail: an unknown CA, a wrong host name, no TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from deploy.local.launcher import Infra
from shared import migrations
from shared.database_tls import split_tls, ssl_argument
from shared.db import create_engine
from tests.order.conftest import new_pay_keys, order_stack
from tests.shared.pg_tls_proxy import PostgresTlsTerminator
from tests.tls import Authority, Issued


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


def _server_context(issued: Issued) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    return context


@pytest.fixture
async def tls_server(infra: Infra, authority: Authority) -> AsyncIterator[PostgresTlsTerminator]:
    """The test PostgreSQL, served over TLS with a certificate for 127.0.0.1 signed by `authority`."""
    port = make_url(infra.postgres_url).port
    assert port is not None
    terminator = PostgresTlsTerminator(port, _server_context(authority.issue("postgres", hosts=("127.0.0.1",))))
    await terminator.start()
    yield terminator
    await terminator.stop()


def _url(server: PostgresTlsTerminator, database: str, query: str) -> str:
    assert server.server is not None
    port = server.server.sockets[0].getsockname()[1]
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/{database}?{query}"


async def _select_one(url: str) -> int:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            return int((await connection.exec_driver_sql("SELECT 1")).scalar_one())
    finally:
        await engine.dispose()


async def test_a_service_and_its_migrations_connect_with_verify_full(
    infra: Infra, tls_server: PostgresTlsTerminator, authority: Authority, bootstrap: str
) -> None:
    admin = await asyncpg.connect(infra.postgres_url)
    await admin.execute("DROP DATABASE IF EXISTS songda_tls WITH (FORCE)")
    await admin.execute("CREATE DATABASE songda_tls")
    await admin.close()
    url = _url(tls_server, "songda_tls", f"sslmode=verify-full&sslrootcert={authority.cert}")
    await asyncio.to_thread(migrations.upgrade, "order", url)
    migrated = len(tls_server.tls_sessions)
    assert migrated >= 1

    async with order_stack(url, bootstrap, new_pay_keys()) as order:
        await order.store()  # a write through the service's own pool
        assert await order.sql("SELECT count(*) FROM store") == [(1,)]
    assert len(tls_server.tls_sessions) > migrated
    assert all(version.startswith("TLSv1.") for version in tls_server.tls_sessions)
    assert tls_server.refused == 0


async def test_verify_full_refuses_an_unknown_ca_a_wrong_host_name_and_no_tls(
    infra: Infra, authority: Authority, tmp_path: Path
) -> None:
    port = make_url(infra.postgres_url).port
    assert port is not None
    stranger = Authority(tmp_path, "another-ca")
    right = PostgresTlsTerminator(port, _server_context(authority.issue("postgres", hosts=("127.0.0.1",))))
    renamed = PostgresTlsTerminator(port, _server_context(authority.issue("elsewhere", hosts=("db.example",))))
    await right.start()
    await renamed.start()
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await _select_one(_url(right, "postgres", f"sslmode=verify-full&sslrootcert={stranger.cert}"))
        with pytest.raises(ssl.SSLCertVerificationError):
            await _select_one(_url(renamed, "postgres", f"sslmode=verify-full&sslrootcert={authority.cert}"))
        # `verify-ca` checks the chain but not the name; `require` encrypts without checking who answers.
        assert await _select_one(_url(renamed, "postgres", f"sslmode=verify-ca&sslrootcert={authority.cert}")) == 1
        assert await _select_one(_url(right, "postgres", "sslmode=require")) == 1
        refused = right.refused
        with pytest.raises(DBAPIError, match="closed"):
            await _select_one(_url(right, "postgres", "sslmode=disable"))
        assert right.refused == refused + 1
    finally:
        await right.stop()
        await renamed.stop()


def test_tls_parameters_leave_the_url_and_unknown_modes_are_refused() -> None:
    url, arguments = split_tls("postgresql+asyncpg://u:p@db:5432/songda_order?sslmode=verify-full&application_name=x")
    assert (
        url.render_as_string(hide_password=False) == "postgresql+asyncpg://u:p@db:5432/songda_order?application_name=x"
    )
    context = arguments["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert split_tls("postgresql+asyncpg://db/x")[1] == {}
    assert ssl_argument("disable") is False
    with pytest.raises(ValueError, match="none of"):
        split_tls("postgresql+asyncpg://db/x?sslmode=verify")
