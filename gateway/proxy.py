"""Forwarding a request to its upstream service through one pooled `httpx.AsyncClient`, bodies streamed both ways.

Hop-by-hop headers are dropped (RFC 9110 §7.6.1), `X-Request-ID` and `traceparent` pass on. The client's address
headers (`X-Forwarded-For`, `X-Real-IP`, `Forwarded`, ...) are the gateway's alone: whatever the client sent is
dropped and the address the gateway decided (`context.client_address`) is set, so a service that believes its
gateway believes nothing the client wrote. The path goes upstream as the raw bytes the route was matched on. An
upstream that times out is a 504, one that is down a 503, both problem+json.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

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


def _forwardable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    listed = {
        token.strip().lower() for name, value in headers if name.lower() == "connection" for token in value.split(",")
    }
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() not in listed]


class UpstreamProxy:
    def __init__(self, client: httpx.AsyncClient, max_body_bytes: int) -> None:
        self.client = client
        self.max_body_bytes = max_body_bytes

    async def forward(self, request: Request, base_url: str) -> StreamingResponse:
        own = CLIENT_ADDRESS | {"x-request-id"}
        headers = [(k, v) for k, v in _forwardable(list(request.headers.items())) if k.lower() not in own]
        headers.append(("x-request-id", context.correlation_id.get() or ""))
        client = context.client_address.get() or ""
        scheme = request.url.scheme
        node = f'"[{client}]"' if ":" in client else client
        headers += [
            ("x-forwarded-for", client),
            ("x-real-ip", client),
            ("x-forwarded-proto", scheme),
            ("forwarded", f"for={node};proto={scheme}"),
        ]

        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        query = request.url.query.encode()
        url = httpx.URL(base_url).copy_with(raw_path=raw_path(request.scope) + (b"?" + query if query else b""))
        upstream_request = self.client.build_request(
            request.method, url, headers=headers, content=self._limited_body(request) if has_body else None
        )
        try:
            upstream = await self.client.send(upstream_request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable() from exc
        response = StreamingResponse(
            upstream.aiter_raw(), status_code=upstream.status_code, background=BackgroundTask(upstream.aclose)
        )
        # Raw headers, so repeated ones (Set-Cookie) stay repeated.
        response.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in _forwardable(list(upstream.headers.multi_items()))
            if k.lower() not in RESPONSE_OWN
        ]
        return response

    async def _limited_body(self, request: Request) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > self.max_body_bytes:
                raise PayloadTooLarge(f"The body exceeds {self.max_body_bytes} bytes")
            yield chunk
