"""Forwarding a request to its upstream service through one pooled `aiohttp.ClientSession`.

Hop-by-hop headers are dropped (RFC 9110 §7.6.1), `X-Request-ID` and `traceparent` pass on. The client's address
headers (`X-Forwarded-For`, `X-Real-IP`, `Forwarded`, ...) are the gateway's alone: whatever the client sent is
dropped and the address the gateway decided (`context.client_address`) is set, so a service that believes its
gateway believes nothing the client wrote. The path goes upstream as the raw bytes the route was matched on. An
upstream that times out is a 504, one that is down a 503, both problem+json.

The request body (at most `max_body_bytes`) is read before the upstream is called. A response whose length is
known and at most `buffer_bytes` is read whole and answered as one message; longer or chunked ones are streamed.
The session retries an idempotent request once when a kept-alive connection fails before any answer (RFC 9112
§9.3.1), and drops idle connections before the upstream's own keep-alive timeout would.
"""

from __future__ import annotations

import aiohttp
from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse
from yarl import URL

from gateway.routes import raw_path
from shared import context
from shared.errors import PayloadTooLarge, UpstreamTimeout, UpstreamUnavailable

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
# Set again by our own server on the way out.
RESPONSE_OWN = frozenset({"date", "server"})
# Said about the client by whoever forwards the request: only the gateway sets these upstream.
CLIENT_ADDRESS = frozenset(
    {
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-proto",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
    }
)


# Set by the gateway alone on the way upstream.
OWN = CLIENT_ADDRESS | {"x-request-id"}


def _forwardable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    listed = {
        token.strip().lower() for name, value in headers if name.lower() == "connection" for token in value.split(",")
    }
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() not in listed]


def upstream_session(
    *, pool_size: int, timeout_seconds: float, connect_timeout_seconds: float, keepalive_seconds: float
) -> aiohttp.ClientSession:
    """A session that sends what the proxy gives it: no default headers, no cookies, bodies as they are."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=pool_size, limit_per_host=0, keepalive_timeout=keepalive_seconds),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_seconds, sock_read=timeout_seconds),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
    )


class UpstreamProxy:
    def __init__(self, session: aiohttp.ClientSession, max_body_bytes: int, buffer_bytes: int) -> None:
        self.session = session
        self.max_body_bytes = max_body_bytes
        self.buffer_bytes = buffer_bytes

    async def forward(self, request: Request, base_url: str) -> Response:
        scope = request.scope
        received = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        headers = [(k, v) for k, v in _forwardable(received) if k not in OWN]
        headers.append(("x-request-id", context.correlation_id.get() or ""))
        client = context.client_address.get() or ""
        scheme: str = scope.get("scheme", "http")
        node = f'"[{client}]"' if ":" in client else client
        headers += [
            ("x-forwarded-for", client),
            ("x-real-ip", client),
            ("x-forwarded-proto", scheme),
            ("forwarded", f"for={node};proto={scheme}"),
        ]
        length = request.headers.get("content-length")
        has_body = length is not None or "transfer-encoding" in request.headers
        body = await self._limited_body(request) if has_body else None
        if body is not None and length is None:
            headers.append(("content-length", str(len(body))))  # read whole: no longer chunked upstream

        query: bytes = scope["query_string"]
        target = raw_path(scope) + (b"?" + query if query else b"")
        url = URL(base_url + target.decode("latin-1"), encoded=True)
        try:
            upstream = await self.session.request(
                request.method, url, headers=headers, data=body, allow_redirects=False, compress=None
            )
        except TimeoutError as exc:
            raise UpstreamTimeout() from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable() from exc
        # Raw headers, so repeated ones (Set-Cookie) stay repeated.
        forwarded = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.raw_headers]
        raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in _forwardable(forwarded)
            if k.lower() not in RESPONSE_OWN
        ]
        length = upstream.content_length
        if length is not None and length <= self.buffer_bytes:
            try:
                content = await upstream.read()
            except TimeoutError as exc:
                raise UpstreamTimeout() from exc
            except aiohttp.ClientError as exc:
                raise UpstreamUnavailable() from exc
            finally:
                upstream.release()
            response = Response(content, status_code=upstream.status)
        else:
            response = StreamingResponse(
                upstream.content.iter_any(), status_code=upstream.status, background=BackgroundTask(upstream.release)
            )
        response.raw_headers = raw_headers
        return response

    async def _limited_body(self, request: Request) -> bytes:
        chunks: list[bytes] = []
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > self.max_body_bytes:
                raise PayloadTooLarge(f"The body exceeds {self.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
