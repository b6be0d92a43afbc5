"""Forwarding a request to its upstream service through the gateway's own pooled client (`gateway.upstream`).

Hop-by-hop headers are dropped (RFC 9110 §7.6.1), `X-Request-ID` and `traceparent` pass on (with tracing on, the
`traceparent` names the gateway's span instead, child of the client's). The client's address
headers (`X-Forwarded-For`, `X-Real-IP`, `Forwarded`, ...) are the gateway's alone: whatever the client sent is
dropped and the address the gateway decided (`context.client_address`) is set, so a service that believes its
gateway believes nothing the client wrote. The path goes upstream as the raw bytes the route was matched on. An
upstream that times out is a 504, one that is down a 503, both problem+json.

The request body (at most `max_body_bytes`) is read before the upstream is called. A response whose length is
known and at most `buffer_bytes` is read whole and answered as one message; longer or chunked ones are streamed.
"""

from __future__ import annotations

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.routes import raw_path
from gateway.upstream import Headers, UpstreamClient
from shared import context
from shared.errors import PayloadTooLarge
from shared.tracing import trace_headers

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
    }
)
# Set again by our own server on the way out.
RESPONSE_OWN = frozenset({b"date", b"server"})
# Said about the client by whoever forwards the request: only the gateway sets these upstream.
CLIENT_ADDRESS = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-proto",
        b"x-real-ip",
        b"x-client-ip",
        b"true-client-ip",
        b"cf-connecting-ip",
    }
)


# Set by the gateway alone on the way upstream.
OWN = CLIENT_ADDRESS | {b"x-request-id"}


def _forwardable(headers: Headers) -> Headers:
    """The headers without hop-by-hop ones (those named in `Connection` included); names lowercased."""
    lowered = [(name.lower(), value) for name, value in headers]
    listed = {token.strip().lower() for name, value in lowered if name == b"connection" for token in value.split(b",")}
    return [(name, value) for name, value in lowered if name not in HOP_BY_HOP and name not in listed]


class UpstreamProxy:
    def __init__(self, client: UpstreamClient, max_body_bytes: int, buffer_bytes: int) -> None:
        self.client = client
        self.max_body_bytes = max_body_bytes
        self.buffer_bytes = buffer_bytes

    async def forward(self, request: Request, base_url: str) -> Response:
        scope = request.scope
        headers = [(name, value) for name, value in _forwardable(scope["headers"]) if name not in OWN]
        client = (context.client_address.get() or "").encode("latin-1")
        scheme = scope.get("scheme", "http").encode("latin-1")
        node = b'"[' + client + b']"' if b":" in client else client
        traced = trace_headers()
        if traced:  # tracing on: the upstream's parent is the gateway's span, not the client's
            names = {name.lower().encode("latin-1") for name in traced}
            headers = [(name, value) for name, value in headers if name not in names]
            headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in traced.items()]
        headers += [
            (b"x-request-id", (context.correlation_id.get() or "").encode("latin-1")),
            (b"x-forwarded-for", client),
            (b"x-real-ip", client),
            (b"x-forwarded-proto", scheme),
            (b"forwarded", b"for=" + node + b";proto=" + scheme),
        ]
        length = request.headers.get("content-length")
        has_body = length is not None or "transfer-encoding" in request.headers
        body = await self._limited_body(request) if has_body else None
        if body is not None and length is None:
            headers.append((b"content-length", str(len(body)).encode()))  # read whole: no longer chunked upstream
        query: bytes = scope["query_string"]
        target = raw_path(scope) + (b"?" + query if query else b"")

        upstream = await self.client.request(scope["method"], base_url, target, headers, body)
        # Repeated headers (Set-Cookie) stay repeated.
        raw_headers = [(name, value) for name, value in _forwardable(upstream.headers) if name not in RESPONSE_OWN]
        length_known = upstream.content_length
        if length_known is not None and length_known <= self.buffer_bytes:
            try:
                content = await upstream.read()
            finally:
                upstream.release()
            response = Response(content, status_code=upstream.status)
        else:
            response = StreamingResponse(
                upstream.chunks(), status_code=upstream.status, background=BackgroundTask(upstream.release)
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
