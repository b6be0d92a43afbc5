"""JSON logs, one object per line, carrying the service name, the correlation id of the request or event, and the
trace and span ids when tracing is on."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from uvicorn.protocols.utils import ClientDisconnected

from shared import context
from shared.tracing import trace_ids

# What a client that goes away mid-request raises in the server or the app: routine, not a fault of ours.
DISCONNECTS = (ClientDisconnect, ClientDisconnected, ConnectionResetError, BrokenPipeError)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        cid = context.correlation_id.get()
        if cid:
            entry["correlation_id"] = cid
        entry.update(trace_ids())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _is_disconnect(exc: BaseException | None) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_disconnect(inner) for inner in exc.exceptions)
    return isinstance(exc, DISCONNECTS)


class ClientDisconnects(logging.Filter):
    """Turns an error logged for a client that disconnected into one info line without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and _is_disconnect(record.exc_info[1]):
            record.error = type(record.exc_info[1]).__name__
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "client disconnected", ()
            record.exc_info, record.exc_text = None, None
        return record.levelno >= logging.getLogger().getEffectiveLevel()


def configure_logging(service: str, level: str = "INFO", *, access_log: bool = True) -> None:
    """Replaces the root handlers with one JSON handler on stderr (uvicorn's loggers included). Without
    `access_log`, uvicorn writes no line per request (it finds no handler for its access logger)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(ClientDisconnects())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").propagate = access_log
    # aiokafka logs every reconnect attempt at ERROR while a broker is away; the relay reports that itself.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # httpx logs every request's whole URL at INFO, query included: WeChat's APIs take the access token there. What an
    # outbound call comes to is logged by its caller, without the secrets.
    logging.getLogger("httpx").setLevel(logging.WARNING)
