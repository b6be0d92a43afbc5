"""The gateway's upstream pool against a service that closes a kept-alive connection as the gateway reuses it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from tests.gateway.test_gateway import _bearer, _claims, _settings, _sign
from tests.support import serve


@pytest.fixture
async def one_answer_per_connection() -> AsyncIterator[str]:
    """Answers the first request on each connection (keep-alive) and closes the connection on the next, unanswered:
    what a server does when its keep-alive timeout ends just as a request arrives."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}')
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


async def test_an_idempotent_request_on_a_connection_closed_under_it_is_retried(one_answer_per_connection: str) -> None:
    settings = _settings(one_answer_per_connection)
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        headers = _bearer(_sign(_claims()))
        for _ in range(3):
            response = await client.get("/v1/orders/anything", headers=headers)
            assert response.status_code == 200, response.text
            assert response.json() == {"ok": True}
