"""The services' log lines: what an outbound call's URL carries (WeChat's access token is a query parameter) never
reaches them."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from shared.logging import configure_logging
from tests.support import serve


@pytest.fixture
def service_logging() -> Iterator[None]:
    """The services' logging configuration, undone afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("httpx", "aiokafka")}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, was in levels.items():
            logging.getLogger(name).setLevel(was)


async def test_an_outbound_calls_access_token_is_not_logged(
    service_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("notify", "INFO")
    wechat = FastAPI()

    @wechat.post("/cgi-bin/message/subscribe/send")
    async def send() -> dict[str, int]:
        return {"errcode": 0}

    async with serve(wechat) as url, httpx.AsyncClient() as client:
        answer = await client.post(f"{url}/cgi-bin/message/subscribe/send", params={"access_token": "SECRET-TOKEN"})
        assert answer.json() == {"errcode": 0}
        logging.getLogger("services.notify").info("sent")  # the service's own lines still come out
    written = capsys.readouterr().err
    assert '"message":"sent"' in written
    assert "SECRET-TOKEN" not in written
