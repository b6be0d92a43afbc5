"""A client that goes away mid-request is logged as one info line, without a traceback."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from urllib.parse import urlsplit

import orjson
import pytest

from gateway.app import create_app
from shared.logging import ClientDisconnects, JsonFormatter
from tests.gateway.test_gateway import _settings, fake_upstream
from tests.support import eventually, serve


@pytest.fixture
def gateway_log() -> Iterator[io.StringIO]:
    """The JSON lines the gateway's logging configuration would write, at INFO."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("gateway"))
    handler.addFilter(ClientDisconnects())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_a_client_that_disconnects_while_sending_its_body_is_logged_at_info(gateway_log: io.StringIO) -> None:
    async with serve(fake_upstream()) as upstream, serve(create_app(_settings(upstream))) as url:
        address = urlsplit(url)
        _reader, writer = await asyncio.open_connection(address.hostname, address.port)
        writer.write(
            b"POST /v1/carriers/dada/callback HTTP/1.1\r\nHost: gateway\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()

        async def logged() -> bool:
            return "client disconnected" in gateway_log.getvalue()

        await eventually(logged)
    entries = [orjson.loads(line) for line in gateway_log.getvalue().splitlines()]
    disconnects = [entry for entry in entries if entry["message"] == "client disconnected"]
    assert disconnects
    assert all(entry["level"] == "info" and "exception" not in entry for entry in disconnects)
    assert not [entry for entry in entries if entry["level"] == "error"]
