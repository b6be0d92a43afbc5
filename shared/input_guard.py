"""Refuses, before any route runs, text that no field of ours can hold: a 400 problem+json instead of a database
error deep inside a use case.

Checked: the path and the query string (percent-decoded: valid UTF-8, no control character) and every string of a
JSON body, keys included (no NUL or other control character but tab, newline and carriage return, no lone UTF-16
surrogate), and its numbers (no NaN or Infinity, which are not JSON, none too large for a float). Anything else
about the body (not JSON at all, wrong shape) is left to the route's own validation. The body is read once and
handed on unchanged, byte for byte, so routes that verify a signature over it still can. A JSON body longer than
`max_body_bytes` is refused with 413 as soon as it is, so nobody makes a process hold a body of any size; routes
whose bodies are not JSON (a carrier's form, a notification) bound theirs themselves.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import BadRequest, PayloadTooLarge, render

# C0 controls and DEL. JSON strings may carry tab, newline and carriage return (a note over two lines).
_URL_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class InputRefused(BadRequest):
    code, title = "invalid-characters", "The request holds characters that are not allowed"


class InputGuardMiddleware:
    """Answers 400 `invalid-characters` for a path, query or JSON body that carries text no field may hold."""

    def __init__(self, app: ASGIApp, max_body_bytes: int | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = _url_problem(scope)
        if problem is None and _has_body(scope) and _is_json(scope):
            body, complete = await _read_body(receive, self.max_body_bytes)
            if not complete:
                await render(None, PayloadTooLarge(f"The body exceeds {self.max_body_bytes} bytes"))(
                    scope, receive, send
                )
                return
            problem = _body_problem(body)
            receive = _replay(body, receive)
        if problem is not None:
            await render(None, InputRefused(problem))(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _url_problem(scope: Scope) -> str | None:
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    for part, raw in (("path", raw_path), ("query string", scope.get("query_string", b""))):
        try:
            text = unquote_to_bytes(raw.replace(b"+", b" ") if part == "query string" else raw).decode("utf-8")
        except UnicodeDecodeError:
            return f"The {part} is not UTF-8"
        if _URL_CONTROL.search(text):
            return f"The {part} holds a control character"
    return None


def _has_body(scope: Scope) -> bool:
    """Whether the request carries a body: without Content-Length or Transfer-Encoding it has none (RFC 9112
    §6.3), so there is nothing to read (and nothing to replay) for most GETs. HTTP/2 frames a body without them."""
    if scope.get("http_version", "1.1") not in ("1.0", "1.1"):
        return True
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _is_json(scope: Scope) -> bool:
    """A JSON media type, or none at all (FastAPI reads a body without one as JSON)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json" or media_type.endswith(b"+json")
    return True


async def _read_body(receive: Receive, limit: int | None) -> tuple[bytes, bool]:
    """The body, or its first part once it exceeds `limit`; and whether it is all of it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunk: bytes = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            return b"".join(chunks), False
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hands on the body that was read as one message, then whatever comes next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class _NotJson(Exception):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _NotJson(f"{literal} is beyond what a number can hold")
    return value


def _body_problem(body: bytes) -> str | None:
    if not body:
        return None
    try:
        document = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite)
    except _NotJson as exc:
        return str(exc)
    except RecursionError:
        return "The JSON body is nested too deeply"
    except ValueError:
        return None  # not JSON: the route's validation says so
    return _text_problem(document)


def _text_problem(document: Any) -> str | None:
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return "A JSON string holds a lone UTF-16 surrogate"
            if _TEXT_CONTROL.search(value):
                return "A JSON string holds a control character"
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return None
