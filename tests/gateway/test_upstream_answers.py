"""Answers of every shape an HTTP/1.1 upstream may give pass through the gateway's client whole: chunked and longer
than what it buffers, delimited by the connection's end, after an interim 1xx, with repeated headers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from tests.gateway.test_gateway import _bearer, _claims, _settings, _sign
from tests.support import serve

BIG = bytes(range(256)) * 4096  # 1 MiB, longer than the gateway reads whole (256 KiB)

ANSWERS = {
    b"/v1/orders/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"%x\r\n" % len(BIG[i : i + 65536]) + BIG[i : i + 65536] + b"\r\n" for i in range(0, len(BIG), 65536))
    + b"0\r\n\r\n",
    b"/v1/orders/until-close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BIG,
    b"/v1/orders/interim": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"/v1/orders/cookies": b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
}


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    """Answers each path with the bytes above, then closes the connection (so every answer ends one)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1]
        writer.write(ANSWERS[path])
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def gateway(upstream: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(_settings(upstream))) as url, httpx.AsyncClient(base_url=url) as client:
        client.headers.update(_bearer(_sign(_claims())))
        yield client


@pytest.mark.parametrize("path", ["/v1/orders/chunked", "/v1/orders/until-close"])
async def test_a_long_answer_is_streamed_through_whole(gateway: httpx.AsyncClient, path: str) -> None:
    response = await gateway.get(path)
    assert response.status_code == 200
    assert response.content == BIG


async def test_an_interim_answer_is_passed_over_for_the_final_one(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/orders/interim")
    assert (response.status_code, response.content) == (200, b"ok")
    assert "link" not in response.headers


async def test_repeated_headers_stay_repeated(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/orders/cookies")
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
