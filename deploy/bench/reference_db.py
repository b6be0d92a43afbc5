"""A scratch database beside the services' ones, for pgbench's reference runs; dropped afterwards."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import asyncpg

from deploy.local.launcher import database_url

if TYPE_CHECKING:
    from deploy.bench.context import Bench


async def _run(server_url: str, database: str, sql: str | None) -> None:
    admin = await asyncpg.connect(database_url(server_url, "postgres", "postgresql"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}"')
        if sql is None:
            return
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    connection = await asyncpg.connect(database_url(server_url, database, "postgresql"))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextlib.contextmanager
def reference_database(bench: Bench, database: str, sql: str) -> Iterator[str]:
    asyncio.run(_run(bench.postgres_url, database, sql))
    try:
        yield database
    finally:
        asyncio.run(_run(bench.postgres_url, database, None))
